; A flat real-mode guest that triple-faults on purpose: it loads an interrupt table of limit 0,
; so the breakpoint exception finds no vector, the resulting double fault finds none either, and
; the CPU shuts down. A VMM must stop the VM with an error (and a register dump), not crash.
; QEMU treats the shutdown as a reset (exit status 0 with -no-reboot).

bits 16
org 0x7C00

start:
    cli
    xor ax, ax
    mov ds, ax
    lidt [empty_idt]
    int3
.unreachable:
    hlt
    jmp .unreachable

empty_idt:
    dw 0                        ; limit 0: no vector is inside the table
    dd 0                        ; base
