; Interrupt injection: vector 0x20's handler writes 0x99 to port 0x80. The guest arms the test
; controller through port 0x83 with interrupts off, then sti; hlt (the STI shadow keeps the
; interrupt from arriving before the HLT), and reports through port 0xf4 once woken.
bits 16
org 0x1000
    cli
    mov word [0x20*4], handler
    mov word [0x20*4+2], 0
    out 0x83, al
    sti
    hlt
    mov al, 0x11
    out 0xf4, al
    cli
    hlt
handler:
    mov al, 0x99
    out 0x80, al
    iret
