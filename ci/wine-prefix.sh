#!/bin/sh
# Makes a fresh Wine prefix that runs Rust programs: builds the bcryptprimitives.dll stub
# (ci/bcryptprimitives.c) with MinGW and copies it into the prefix's system32.
# Usage: ci/wine-prefix.sh DIR   (DIR is created; export WINEPREFIX=DIR afterwards)
set -eu
prefix=$1
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$prefix"
build=$(mktemp -d)
x86_64-w64-mingw32-gcc -shared -O2 -o "$build/bcryptprimitives.dll" \
    "$here/bcryptprimitives.c" "$here/bcryptprimitives.def" -ladvapi32
WINEPREFIX=$prefix WINEDEBUG=-all wine wineboot -i >/dev/null 2>&1
cp "$build/bcryptprimitives.dll" "$prefix/drive_c/windows/system32/"
rm -rf "$build"
