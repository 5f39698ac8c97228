; API test guest: prints "spinning" through the UART, then spins in `jmp $` with interrupts off,
; making no exits at all: pausing it on KVM needs the vCPU kicked out of KVM_RUN.
; Build: nasm -f bin -o spin.bin spin.asm
bits 16
org 0x7c00
start:
    cli
    xor ax, ax
    mov ds, ax
    mov si, msg
    mov dx, 0x3f8
.next:
    lodsb
    test al, al
    jz .spin
    out dx, al
    jmp .next
.spin:
    jmp .spin
msg: db "spinning", 10, 0
