; Halts with interrupts disabled: nothing can ever wake this CPU.
bits 16
org 0x1000
    cli
    hlt
    jmp $
