; Instruction-TLB coherence: code at one linear page is remapped to another physical page,
; once with INVLPG and once by reloading CR3, and each call must run the code now mapped there
; (a stale fetch translation would run the old page's code). Each phase calls often enough for
; the block compiler to compile the code.
%include "lm_setup.inc"

PT     equ 0x24000
CODE_V equ 0x600000                     ; the linear page, PD0 entry 3 -> PT
CODE_A equ 0x300000                     ; returns 1
CODE_B equ 0x301000                     ; returns 2

main64:
    mov dword [CODE_A], 0x000001b8      ; mov eax, 1
    mov word [CODE_A + 4], 0xc300       ; ...; ret
    mov dword [CODE_B], 0x000002b8      ; mov eax, 2
    mov word [CODE_B + 4], 0xc300
    mov rdi, PT
    xor eax, eax
    mov ecx, 1024
    rep stosd
    mov qword [PT], CODE_A | 3
    mov qword [PD0 + 3 * 8], PT | 3
    invlpg [CODE_V]

    mov ebx, 1                          ; A through a fresh mapping
    call phase
    mov qword [PT], CODE_B | 3          ; B by INVLPG
    invlpg [CODE_V]
    mov ebx, 2
    call phase
    mov qword [PT], CODE_A | 3          ; A again by a CR3 reload
    mov rax, cr3
    mov cr3, rax
    mov ebx, 1
    call phase

    lea rsi, [rel ok_msg]
    call print64
    mov al, 0
    jmp exit64

; Calls CODE_V 1000 times; each must return EBX.
phase:
    mov r12d, 1000
.loop:
    mov rax, CODE_V
    call rax
    cmp eax, ebx
    jne .bad
    dec r12d
    jnz .loop
    ret
.bad:
    lea rsi, [rel bad_msg]
    call print64
    mov al, 2
    jmp exit64

ok_msg: db "ITLB OK", 10, 0
bad_msg: db "stale code after a remap", 10, 0
