#!/usr/bin/env bash
# Records what QEMU (through shared/tools/qemu-ref, the reference runner with denovisor's flags)
# prints for each fixture guest, and its exit status, into <case>.expected (the serial output,
# byte for byte) and expected.json (the cases: kernel, flags, status, output file). End-to-end
# tests run denovisor with the same flags and compare against these files, so CI needs no QEMU.
# Run from anywhere after tests/guests/build.sh (and build_linked.sh); needs qemu-system-x86.
#
# Every multiboot case prints only what a correct loader and QEMU agree on for the same --mem
# (mem_upper rounded to MiB; the arguments after the kernel path in the command line).
# triple_fault is not recorded: QEMU resets on a triple fault, denovisor stops with status 1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ref=${QEMU_REF:-$root/../shared/tools/qemu-ref}
cd "$root"
printf 'initrd fixture: 3000 bytes of text for the Multiboot module test\n%.0s' {1..47} |
  head -c 3000 >"$here/module.txt"

# name | kernel (relative to the repository root) | qemu-ref/denovisor flags
cases=(
  "default|guests/default.bin|--format flat"
  "hello_flat|tests/guests/hello_flat.bin|--format flat"
  "hello_multiboot|tests/guests/hello_multiboot.elf|--mem 128M --cmdline console=ttyS0 loglevel=3"
  "hello_multiboot_64m|tests/guests/hello_multiboot.elf|--mem 64M"
  "hello_multiboot_initrd|tests/guests/hello_multiboot.elf|--mem 32M --initrd tests/guests/module.txt --cmdline with a module"
  "hello_aout|tests/guests/hello_aout.bin|--mem 128M --cmdline a.out kludge"
  "ld_multiboot|tests/guests/ld_multiboot.elf|--mem 128M --cmdline ld -Ttext 0x100000"
  "ld_multiboot_default|tests/guests/ld_multiboot_default.elf|--mem 256M"
  "c_multiboot|tests/guests/c_multiboot.elf|--mem 64M --cmdline built by gcc"
)

json="["
sep=""
for c in "${cases[@]}"; do
  IFS='|' read -r name kernel flags <<<"$c"
  # Split the flags into words, keeping a --cmdline value (the rest of the line) whole.
  args=()
  rest=$flags
  while [ -n "$rest" ]; do
    word=${rest%% *}
    if [ "$word" = "--cmdline" ]; then
      args+=(--cmdline "${rest#--cmdline }")
      rest=""
    else
      args+=("$word")
      [ "$rest" = "$word" ] && rest="" || rest=${rest#* }
    fi
  done
  set +e
  out=$(timeout 60 "$ref" --kernel "$kernel" "${args[@]}" | od -An -v -tx1 | tr -d ' \n')
  status=${PIPESTATUS[0]}
  set -e
  # qemu-ref's firmware-banner filter can leave the end of SeaBIOS's "Booting from Floppy...\r\n"
  # (a "." and the line break, depending on how the bytes arrive); every guest here starts its
  # output with a letter, so drop leading ".", "\r" and "\n".
  while :; do
    case "$out" in 2e* | 0d* | 0a*) out=${out:2} ;; *) break ;; esac
  done
  printf '%s' "$out" | xxd -r -p >"$here/$name.expected"
  echo "$name: status $status, $(wc -c <"$here/$name.expected") bytes"
  argjson=$(printf '%s\n' "${args[@]}" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().splitlines()))')
  json+="$sep
  {\"name\": \"$name\", \"kernel\": \"$kernel\", \"args\": $argjson, \"status\": $status, \"stdout\": \"tests/guests/$name.expected\"}"
  sep=","
done
printf '%s\n]\n' "$json" >"$here/expected.json"
"${DENO:-$root/node_modules/.bin/deno}" fmt --quiet "$here/expected.json"
