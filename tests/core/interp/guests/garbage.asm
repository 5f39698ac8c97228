; A guest that jumps into garbage: 64-bit mode with an empty IDT (limit 0) jumps to a page of
; 0xFF bytes (FF FF is an undefined opcode), which ends in a triple fault. A second entry point
; (at offset 0x10 of the image... see the test) jumps to an address that is not RAM.
%include "lm_setup.inc"

main64:
    lidt [rel empty_idt]
    mov rdi, 0x300000
    mov rcx, 4096
    mov al, 0xff
    rep stosb
    cmp dword [0x504], 0
    jne .outside
    mov rax, 0x300000
    jmp rax
.outside:
    mov rax, 0x3ff00000                 ; 1 GiB - 1 MiB: mapped, but past the test's 16 MiB RAM
    jmp rax

empty_idt:
    dw 0
    dq 0
