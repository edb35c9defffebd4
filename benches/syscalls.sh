#!/usr/bin/env bash
# System calls per operation of the peers benchmark's operations, counted by `strace -c`: each
# operation runs N1 and N2 times in a fresh process (ONLYONE_PEERS_LOOP, see benches/peers.rs),
# and every system call's count difference, divided by N2 - N1, is printed: start-up, the holder
# child's spawn (not traced: no -f, the child is another process) and one-time set-up cancel out.
#
#   benches/syscalls.sh                           # the default ids, both operations
#   benches/syscalls.sh onlyone_flock raw_flock   # chosen ids
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-100}
N2=${N2:-1100}
ids=("$@")
[ ${#ids[@]} -gt 0 ] || ids=(raw_flock std fs2 fd-lock named-lock onlyone_flock raw_abstract single-instance onlyone_abstract raw_pidfile pidlock onlyone_pidfile)
command -v strace >/dev/null || { echo "strace is not installed (apt-get install strace)" >&2; exit 1; }
bin=$(cargo bench --bench peers --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*peers-[0-9a-f]*\)).*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "cannot find the peers bench binary" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
counts() { # id op n file: "syscall calls errors" lines
  ONLYONE_PEERS_LOOP="$1:$2:$3" strace -c -U name,calls,errors -o "$out/raw" "$bin" >/dev/null 2>&1
  awk 'NR > 2 && $1 !~ /^-/ && $1 != "total" && $1 != "syscall" { print $1, $2, ($3 == "" ? 0 : $3) }' "$out/raw" | sort >"$4"
}
echo "system calls per operation ((count(N=$N2) - count(N=$N1)) / $((N2 - N1)), strace -c, $(strace -V | head -1))"
for id in "${ids[@]}"; do
  for op in acquire_release contended; do
    counts "$id" "$op" "$N1" "$out/a"; counts "$id" "$op" "$N2" "$out/b"
    join -a 2 -e 0 -o 0,1.2,1.3,2.2,2.3 "$out/a" "$out/b" | awk -v d=$((N2 - N1)) -v id="$id" -v op="$op" '
      { n = ($4 - $2) / d; e = ($5 - $3) / d
        if (n >= 0.05) { total += n; s = s sprintf(" %s %.2g", $1, n); if (e >= 0.05) s = s sprintf(" (%.2g failed)", e) } }
      END { printf "| %s | %s | %.1f |%s |\n", id, op, total, s }'
  done
done
