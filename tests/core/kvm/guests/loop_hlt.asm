; Benchmark guest: HLT with interrupts on, woken each time by vector 0x20 whose handler irets.
bits 16
org 0x1000
    cli
    mov word [0x20*4], handler
    mov word [0x20*4+2], 0
    sti
.l: hlt
    jmp .l
handler:
    iret
