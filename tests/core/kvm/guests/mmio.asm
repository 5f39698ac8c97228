; Real-mode MMIO guest: the device at 0xa0000 records writes and answers reads; the values read
; are echoed to port 0x80; port 0xf4 ends the run.
bits 16
org 0x1000
start:
    mov ax, 0xa000
    mov ds, ax
    mov byte [0x10], 0x5a
    mov word [0x20], 0x1234
    mov dword [0x30], 0xcafef00d
    mov al, [0x40]
    mov bx, [0x42]
    mov ecx, [0x44]
    out 0x80, al
    mov ax, bx
    out 0x80, ax
    mov eax, ecx
    out 0x80, eax
    xor al, al
    out 0xf4, al
    cli
    hlt
