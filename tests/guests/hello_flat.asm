; A flat real-mode guest, as a boot sector would be: loaded at 0000:7C00, it prints a few lines
; over COM1 (polling the line status register before every byte) and ends through the
; debug-exit port with the value 0x21, so the VM exits with status (0x21 << 1) | 1 = 0x43.
; At most 510 bytes, so QEMU can boot the same bytes as a boot sector for reference.

bits 16
org 0x7C00
DEBUG_EXIT  equ 0xF4            ; isa-debug-exit port
EXIT_VALUE  equ 0x21            ; status 0x43

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00
    cld
    call uart_init16
    mov si, message
    call puts16
    mov al, EXIT_VALUE
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt

%include "uart16.inc"

message:
    db "hello from a flat real-mode guest", 10
    db "line two: the UART keeps up", 10
    db "line three: exiting with status 0x43", 10, 0

%if ($ - $$) > 510
%error "hello_flat.bin must fit in 510 bytes"
%endif
