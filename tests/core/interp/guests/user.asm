; CPL3 <-> CPL0: IRETQ into user mode; a #GP from user HLT handled on the TSS RSP0 stack; INT 0x80
; through a DPL3 gate; #UD through IST1; SYSCALL/SYSRET with STAR/LSTAR/SFMASK; SWAPGS with
; GS_BASE/KERNEL_GS_BASE; FS_BASE for user data. User code cannot do port I/O, so it prints and
; exits through system calls (RAX=1 print RSI, RAX=2 exit with DIL).
%include "lm_setup.inc"

RSP0     equ 0x80000
IST1     equ 0x60000
KSTACK   equ 0x88000
USTACK   equ 0x70000
KGS      equ 0x140000
UGS      equ 0x150000
UFS      equ 0x160000

main64:
    ; TSS: RSP0 and IST1.
    mov qword [TSS + 4], RSP0
    mov qword [TSS + 0x24], IST1
    mov ax, TSSSEL
    ltr ax
    ; Gates: #GP (13) DPL0, #UD (6) on IST1, INT 0x80 DPL3.
    mov rdi, 13
    lea rsi, [rel gp_handler]
    mov dl, 0x8e
    xor ecx, ecx
    call set_gate
    mov rdi, 6
    lea rsi, [rel ud_handler]
    mov cl, 1
    call set_gate
    mov rdi, 0x80
    lea rsi, [rel int80_handler]
    mov dl, 0xee
    xor ecx, ecx
    call set_gate
    ; SYSCALL MSRs.
    mov ecx, 0xc0000081                  ; STAR: user base 0x23, kernel CS 0x10
    xor eax, eax
    mov edx, (UCODE32 << 16) | KCODE
    wrmsr
    mov ecx, 0xc0000082                  ; LSTAR
    lea rax, [rel syscall_entry]
    mov rdx, rax
    shr rdx, 32
    wrmsr
    mov ecx, 0xc0000084                  ; SFMASK: clear DF and TF
    mov eax, 0x500
    xor edx, edx
    wrmsr
    ; Bases: user FS and GS, kernel GS (swapped in by SWAPGS).
    mov qword [UFS], 0x1111
    mov qword [UGS], 0x2222
    mov qword [KGS], 0x3333
    mov ecx, 0xc0000100
    mov eax, UFS
    xor edx, edx
    wrmsr
    mov ecx, 0xc0000101
    mov eax, UGS
    wrmsr
    mov ecx, 0xc0000102
    mov eax, KGS
    wrmsr
    ; Into user mode.
    push UDATA
    push USTACK
    push 0x2
    push UCODE
    lea rax, [rel user_code]
    push rax
    iretq

gp_handler:
    ; Expect: error code 0, from CS 0x33, on the RSP0 stack.
    cmp qword [rsp], 0
    jne fail
    cmp qword [rsp + 16], UCODE
    jne fail
    lea rax, [rsp + 48]
    cmp rax, RSP0
    jne fail
    mov ax, cs
    cmp ax, KCODE
    jne fail
    lea rsi, [rel gp_msg]
    call print64
    add qword [rsp + 8], 1               ; skip the HLT
    add rsp, 8
    iretq

ud_handler:
    ; IST1: frame of 5 qwords at IST1 - 40 (no error code).
    lea rax, [rsp + 40]
    cmp rax, IST1
    jne fail
    lea rsi, [rel ud_msg]
    call print64
    add qword [rsp], 2                   ; skip UD2
    iretq

int80_handler:
    cmp qword [rsp + 8], UCODE
    jne fail
    lea rsi, [rel i80_msg]
    call print64
    iretq

syscall_entry:
    swapgs
    mov [gs:8], rsp                      ; save user RSP in the kernel GS area
    mov rsp, KSTACK
    cmp qword [gs:0], 0x3333
    jne fail
    pushfq
    pop rbx
    test rbx, 0x400                      ; SFMASK must have cleared DF
    jnz fail
    test r11, 0x400                      ; ... while R11 keeps the user's DF
    jz fail
    mov ax, cs
    cmp ax, KCODE
    jne fail
    mov ax, ss
    cmp ax, KDATA
    jne fail
    cmp r9, 2
    je .exit
    call print64
    mov rsp, [gs:8]
    swapgs
    o64 sysret
.exit:
    lea rsi, [rel ok_msg]
    call print64
    mov al, 0
    jmp exit64

user_code:
    mov ax, cs
    cmp ax, UCODE
    jne ufail
    cmp qword [fs:0], 0x1111
    jne ufail
    cmp qword [gs:0], 0x2222
    jne ufail
    hlt                                  ; #GP at CPL3
    ud2                                  ; #UD through IST1
    int 0x80
    std
    mov r9, 1
    lea rsi, [rel sc_msg]
    syscall
    cld
    mov ax, cs
    cmp ax, UCODE
    jne ufail
    mov ax, ss
    cmp ax, UDATA
    jne ufail
    cmp qword [gs:0], 0x2222             ; SWAPGS back on the way out
    jne ufail
    std
    mov r9, 2
    syscall
ufail:
    ud2
    jmp ufail

gp_msg: db "GP ", 0
ud_msg: db "UD ", 0
i80_msg: db "I80 ", 0
sc_msg: db "SC ", 0
ok_msg: db "OK", 10, 0
