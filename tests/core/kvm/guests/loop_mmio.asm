; Benchmark guest: an endless loop of 1-byte MMIO writes to 0xa0000.
bits 16
org 0x1000
    mov ax, 0xa000
    mov ds, ax
.l: mov [0], al
    jmp .l
