#!/usr/bin/env bash
# Instructions per operation of the peers benchmark's operations, under valgrind's callgrind:
# each operation runs N1 and N2 times in a fresh process (ONLYONE_PEERS_LOOP, see
# benches/peers.rs), and (Ir(N2) - Ir(N1)) / (N2 - N1) is printed, so that process start-up, the
# holder child's spawn (the child itself runs natively: no --trace-children) and one-time set-up
# cancel out. Instruction counts do not depend on the load of the machine.
#
#   benches/callgrind.sh                          # the default ids, both operations
#   benches/callgrind.sh fs2 onlyone_flock        # chosen ids
#   N1=100 N2=600 benches/callgrind.sh            # other loop counts
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-100}
N2=${N2:-1100}
ids=("$@")
[ ${#ids[@]} -gt 0 ] || ids=(raw_flock std fs2 fd-lock named-lock onlyone_flock raw_abstract single-instance onlyone_abstract raw_pidfile pidlock onlyone_pidfile)
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
bin=$(cargo bench --bench peers --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*peers-[0-9a-f]*\)).*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "cannot find the peers bench binary" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ir() { # id op n -> instructions of the whole run
  ONLYONE_PEERS_LOOP="$1:$2:$3" valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bin" \
    2>"$out/log" >/dev/null || { cat "$out/log" >&2; exit 1; }
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out/log"
}
echo "instructions per operation ((Ir(N=$N2) - Ir(N=$N1)) / $((N2 - N1)), callgrind, $(valgrind --version))"
printf '| %-17s | %15s | %15s |\n' id acquire_release contended
printf '| --- | --- | --- |\n'
for id in "${ids[@]}"; do
  row=()
  for op in acquire_release contended; do
    a=$(ir "$id" "$op" "$N1"); b=$(ir "$id" "$op" "$N2")
    row+=("$(( (b - a) / (N2 - N1) ))")
  done
  printf '| %-17s | %15s | %15s |\n' "$id" "${row[0]}" "${row[1]}"
done
