; Real-mode hello: prints through the UART data port 0x3F8, then exits through port 0xF4.
; Loaded at 0x7C00 and entered at 0000:7C00, like a boot sector.
bits 16
org 0x7c00
start:
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    mov si, msg
    mov dx, 0x3f8
.next:
    lodsb
    test al, al
    jz .done
    out dx, al
    jmp .next
.done:
    mov al, 0
    out 0xf4, al
    hlt
msg: db "hello from real mode", 10, 0
