#!/usr/bin/env bash
# Builds the fixture guests in tests/guests from their nasm sources (and the embedded default
# guest in guests/). The built images are checked in, so tests and CI need no assembler; a test
# (tests/guests/images_test.ts) checks each checked-in image against a fresh build when nasm is
# installed. Needs only nasm (apt-get install -y nasm). Run from anywhere.
#
#   hello_flat.bin       flat real-mode guest (boot sector sized), exits with status 0x43
#   hello_multiboot.elf  Multiboot ELF32 kernel; the ELF headers are written in the source, so
#                        `nasm -f bin` builds it without a linker
#   hello_aout.bin       Multiboot kernel using the a.out kludge (header address fields)
#   triple_fault.bin     real-mode guest that triple-faults (lidt with limit 0, then int3)
#
# The linker-built Multiboot fixtures (ld_multiboot*.elf, c_multiboot.elf) come from
# build_linked.sh, run from here when ld and gcc are installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
nasm -f bin -o hello_flat.bin hello_flat.asm
nasm -f bin -o hello_multiboot.elf hello_multiboot.asm
nasm -f bin -o hello_aout.bin hello_aout.asm
nasm -f bin -o triple_fault.bin triple_fault.asm
if command -v ld >/dev/null && command -v gcc >/dev/null; then
  "$here/build_linked.sh"
else
  echo "build.sh: ld or gcc missing: the linker-built fixtures (build_linked.sh) were not rebuilt" >&2
fi
deno=${DENO:-$here/../../node_modules/.bin/deno}
"$deno" run -A "$here/../../guests/build.ts"
