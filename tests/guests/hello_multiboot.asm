; A Multiboot kernel in ELF32 form, written the way a small hobby kernel is: one PT_LOAD segment
; at 1 MiB with a .bss tail, the Multiboot header in the first 8 KiB. The ELF header is written
; by hand so that nasm alone builds it (`nasm -f bin`). It prints its multiboot_info over COM1
; and exits through the debug-exit port with status 33.

bits 32
LOAD_ADDR   equ 0x100000        ; where the segment goes (1 MiB, as usual for Multiboot kernels)
MB_MAGIC    equ 0x1BADB002      ; Multiboot header magic
MB_FLAGS    equ 0x00000003      ; bit 0: page-align modules, bit 1: memory information wanted
PT_LOAD     equ 1
EM_386      equ 3
ET_EXEC     equ 2

org LOAD_ADDR
ehdr:
    db 0x7F, "ELF", 1, 1, 1, 0  ; ELFCLASS32, little-endian, version 1, System V ABI
    times 8 db 0
    dw ET_EXEC
    dw EM_386
    dd 1                        ; e_version
    dd _start                   ; e_entry
    dd phdr - ehdr              ; e_phoff
    dd 0                        ; e_shoff: no section headers
    dd 0                        ; e_flags
    dw ehdr_size                ; e_ehsize
    dw phdr_size                ; e_phentsize
    dw 1                        ; e_phnum
    dw 0, 0, 0                  ; e_shentsize, e_shnum, e_shstrndx
ehdr_size equ $ - ehdr

phdr:
    dd PT_LOAD
    dd 0                        ; p_offset: the segment starts with the ELF header
    dd LOAD_ADDR                ; p_vaddr
    dd LOAD_ADDR                ; p_paddr
    dd file_end - ehdr          ; p_filesz
    dd bss_end - ehdr           ; p_memsz: the .bss tail is zeroed by the loader
    dd 7                        ; p_flags: RWX
    dd 0x1000                   ; p_align
phdr_size equ $ - phdr

align 4
mb_header:
    dd MB_MAGIC
    dd MB_FLAGS
    dd -(MB_MAGIC + MB_FLAGS)

_start:
    jmp mb_main

%include "uart32.inc"
%include "mb_report.inc"

banner: db "hello from a Multiboot ELF kernel", 10, 0

file_end:
section .bss follows=.text nobits
    resb 4096
stack_top:
bss_end:
