; A Multiboot kernel in flat binary form using the "a.out kludge" (header flag bit 16): the
; header's address fields tell the loader where to put the file and where to enter, so no ELF
; parsing is involved. Loaded at 2 MiB, with a .bss tail the loader must zero. It prints its
; multiboot_info over COM1 and exits through the debug-exit port with status 33.

bits 32
LOAD_ADDR   equ 0x200000        ; load_addr: where the first byte of the file goes
MB_MAGIC    equ 0x1BADB002      ; Multiboot header magic
MB_FLAGS    equ 0x00010003      ; bit 0: page-align modules, bit 1: memory info, bit 16: a.out kludge

org LOAD_ADDR
start:
    jmp _start                  ; the header need not be first: header_addr says where it is

align 4
mb_header:
    dd MB_MAGIC
    dd MB_FLAGS
    dd -(MB_MAGIC + MB_FLAGS)
    dd mb_header                ; header_addr: the address this header is loaded at
    dd start                    ; load_addr: file offset (header offset - (header_addr - load_addr))
    dd file_end                 ; load_end_addr: load this much of the file
    dd bss_end                  ; bss_end_addr: zero up to here
    dd _start                   ; entry_addr

_start:
    jmp mb_main

%include "uart32.inc"
%include "mb_report.inc"

banner: db "hello from a Multiboot a.out-kludge kernel", 10, 0

file_end:
section .bss follows=.text nobits
    resb 4096
stack_top:
bss_end:
