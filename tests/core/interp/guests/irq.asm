; Interrupts, HLT and MMIO: STI; HLT waits until the test's interrupt controller raises vector
; 0x20; the handler runs and IRETQ resumes after the HLT. Then MMIO through a 1 GiB page at
; 3 GiB: a write the device records and a read it answers. Finally CLI; HLT, which can never wake.
%include "lm_setup.inc"

main64:
    mov rdi, 0x20
    lea rsi, [rel irq_handler]
    mov dl, 0x8e
    xor ecx, ecx
    call set_gate
    sti
    hlt
    cmp qword [irq_count], 1
    jne fail
    cli
    ; Map 3 GiB with a 1 GiB page (PDPT entry 3, PS).
    mov rax, 0xc0000000 | 0x83
    mov [PDPT + 3 * 8], rax
    mov rbx, 0xc0000000
    mov dword [rbx + 0x10], 0x12345678
    mov eax, [rbx + 0x20]
    call hex64
    lea rsi, [rel nl]
    call print64
    hlt

irq_handler:
    inc qword [irq_count]
    lea rsi, [rel irq_msg]
    call print64
    iretq

irq_count: dq 0
irq_msg: db "IRQ ", 0
nl: db 10, 0
