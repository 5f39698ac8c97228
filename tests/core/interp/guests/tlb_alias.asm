; Software-TLB aliasing: user code and the kernel touch two linear pages 16 MiB apart, which
; share a TLB slot, in alternation (user read, SYSCALL, kernel read, SYSRET, user read). Each
; must keep seeing its own page. Needs 32 MiB of RAM.
%include "lm_setup.inc"

PAGE_U equ 0x400000
PAGE_K equ 0x1400000

main64:
    mov qword [PAGE_U], 0x1111
    mov qword [PAGE_K], 0x2222
    mov ecx, 0xc0000081                  ; STAR
    xor eax, eax
    mov edx, (UCODE32 << 16) | KCODE
    wrmsr
    mov ecx, 0xc0000082                  ; LSTAR
    lea rax, [rel kentry]
    mov rdx, rax
    shr rdx, 32
    wrmsr
    push UDATA
    push 0x70000
    push 0x2
    push UCODE
    lea rax, [rel user]
    push rax
    iretq

kentry:
    cmp r9, 1
    je .done
    mov rax, [PAGE_K]                    ; kernel fills the shared slot with its page
    cmp rax, 0x2222
    jne fail
    o64 sysret
.done:
    lea rsi, [rel ok_msg]
    call print64
    mov al, 0
    jmp exit64

user:
    xor r9d, r9d
    mov rbx, [PAGE_U]
    syscall
    mov rbx, [PAGE_U]                    ; must still be the user page
    cmp rbx, 0x1111
    jne .bad
    mov r9d, 1
    syscall
.bad:
    ud2

ok_msg: db "TLB OK", 10, 0
