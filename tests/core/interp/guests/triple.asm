; Triple fault: 32-bit protected mode with an empty IDT (limit 0); UD2 raises #UD, whose
; delivery raises #GP, then #DF, then a third fault: the CPU shuts down.
bits 16
org 0x7c00
start:
    cli
    xor ax, ax
    mov ds, ax
    lgdt [gdt_desc]
    lidt [idt_desc]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    jmp 0x08:pm32
bits 32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov ss, ax
    mov esp, 0x7c00
    ud2
    mov al, 0
    out 0xf4, al
    hlt
align 8
gdt:
    dq 0
    dq 0x00cf9a000000ffff
    dq 0x00cf92000000ffff
gdt_end:
gdt_desc:
    dw gdt_end - gdt - 1
    dd gdt
idt_desc:
    dw 0
    dd 0
