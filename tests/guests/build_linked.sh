#!/usr/bin/env bash
# Builds the Multiboot fixtures that a linker lays out, as kernels are usually built: nasm or
# gcc makes an ELF32 object and GNU ld links it with its default linker script. The images are
# checked in (tests and CI need no toolchain); toolchain.txt records the ld and gcc that built
# them, and tests/guests/images_test.ts rebuilds them into a scratch directory and compares
# bytes only where the host has that same ld and gcc (another linker version may lay them out
# differently). Needs nasm, binutils (ld) and gcc with -m32 code generation. Run from anywhere.
#
#   ld_multiboot.elf          ld_multiboot.asm linked with `ld -m elf_i386 -Ttext 0x100000`:
#                             a headers-only PT_LOAD at 0xFF000, .text at 1 MiB
#   ld_multiboot_default.elf  the same object linked with `ld -m elf_i386` and nothing else:
#                             headers at 0x8048000, .text at 0x8049000 (needs --mem 256M)
#   c_multiboot.elf           c_multiboot.c (gcc -m32 -ffreestanding) linked with -Ttext 0x100000
#   ld_multiboot_bios.elf     ld_multiboot.asm linked with -Ttext 0xe1000: headers at 0xE0000,
#                             over the VMM's ACPI tables, the whole kernel in the BIOS area
#                             (QEMU cannot run it: SeaBIOS lives there; linked_test.ts checks it)
#
#   build_linked.sh [OUTDIR]  (default: this directory)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "${1:-$here}" && cd "${1:-$here}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Relative source names: they end up in the objects' symbol tables.
cd "$here"
nasm -f elf32 -o "$tmp/ld_multiboot.o" ld_multiboot.asm
ld -m elf_i386 -Ttext 0x100000 -o "$out/ld_multiboot.elf" "$tmp/ld_multiboot.o"
ld -m elf_i386 -o "$out/ld_multiboot_default.elf" "$tmp/ld_multiboot.o"
ld -m elf_i386 -Ttext 0xe1000 -o "$out/ld_multiboot_bios.elf" "$tmp/ld_multiboot.o"
# No SSE/x87 code (the kernel runs with CR4.OSFXSR clear), no libc calls gcc might invent.
gcc -m32 -O2 -ffreestanding -nostdlib -fno-pic -fno-pie -fno-stack-protector \
  -fno-asynchronous-unwind-tables -fno-tree-loop-distribute-patterns -mgeneral-regs-only \
  -fcf-protection=none -c -o "$tmp/c_multiboot.o" c_multiboot.c
ld -m elf_i386 -Ttext 0x100000 -o "$out/c_multiboot.elf" "$tmp/c_multiboot.o"
chmod 644 "$out"/ld_multiboot.elf "$out"/ld_multiboot_default.elf "$out"/ld_multiboot_bios.elf \
  "$out"/c_multiboot.elf
{ ld --version | head -1; gcc --version | head -1; } >"$out/toolchain.txt"
