; Loads an empty real-mode IDT and raises int3: #GP, then #DF, then a triple fault.
; The nested kvm_pvm host ignores the real-mode IDT limit and vectors through IVT entry 3
; (0:0) instead; the opcode 0f 3f stored there first makes its emulator stop at once
; (KVM_EXIT_INTERNAL_ERROR) rather than walk 64 KiB of zero bytes for many seconds.
bits 16
org 0x1000
    mov word [0], 0x3f0f
    lidt [idt0]
    int3
    jmp $
idt0:   dw 0
        dd 0
