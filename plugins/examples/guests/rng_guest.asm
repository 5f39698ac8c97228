; Uses the hw_rng example plugin: prints four 32-bit values read from port 0x5A0,
; checks the status port, and resets (status 0); exits with status 3 on a bad status.
; Build: nasm -f bin -o rng_guest.bin rng_guest.asm
bits 16
org 0x7c00
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    mov si, banner
    call print_str
    mov bx, 4
.next:
    mov dx, 0x5a0
    in eax, dx
    call print_hex32
    mov al, ' '
    call print_char
    dec bx
    jnz .next
    mov al, 10
    call print_char
    mov dx, 0x5a1
    in al, dx
    cmp al, 1
    jne fail_vm
    jmp reset_vm

%include "serial.inc"
banner: db "rng: ", 0
