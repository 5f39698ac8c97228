; Halts with interrupts enabled and waits; port 0xf4 ends the run if it ever wakes.
bits 16
org 0x1000
    sti
    hlt
    mov al, 7
    out 0xf4, al
    jmp $
