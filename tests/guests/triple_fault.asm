; A flat guest that triple-faults on purpose. It switches to 32-bit protected mode, loads an
; interrupt table of limit 0 and executes int3: the breakpoint finds no gate (#GP), the #GP
; finds none (#DF), the double fault finds none, and the CPU shuts down. A VMM must stop the
; VM with an error and a register dump, not crash or hang. (Protected mode, because the nested
; kvm_pvm host does not fault on a real-mode IVT limit: there it reports its own limit instead.)
; QEMU treats the shutdown as a reset (exit status 0 with -no-reboot).

bits 16
org 0x7C00

CODE32 equ 0x08
DATA32 equ 0x10

start:
    cli
    xor ax, ax
    mov ds, ax
    lgdt [gdt_ptr]
    mov eax, cr0
    or eax, 1                   ; CR0.PE
    mov cr0, eax
    jmp CODE32:pm

bits 32
pm:
    mov ax, DATA32
    mov ds, ax
    mov ss, ax
    mov esp, 0x7C00
    lidt [empty_idt]
    int3
.unreachable:
    hlt
    jmp .unreachable

align 8
gdt:
    dq 0                        ; null
    dq 0x00CF9A000000FFFF       ; 0x08: flat 32-bit code
    dq 0x00CF92000000FFFF       ; 0x10: flat data
gdt_ptr:
    dw gdt_ptr - gdt - 1
    dd gdt

empty_idt:
    dw 0                        ; limit 0: no vector is inside the table
    dd 0                        ; base
