; The stack across a 4 GiB boundary: RSP's low half wraps while PUSH, CALL, POP and RET move it
; (the block compiler adjusts RSP on its 32-bit halves), and every value must come back. The
; linear pages either side of 0x1_0000_0000 are mapped to RAM at 0x200000 and 0x400000.
%include "lm_setup.inc"

PD_LO equ 0x25000                       ; PDPT entry 3: 0xC000_0000..0xFFFF_FFFF
PD_HI equ 0x26000                       ; PDPT entry 4: 0x1_0000_0000..

main64:
    mov rdi, PD_LO
    xor eax, eax
    mov ecx, 2048
    rep stosd
    mov rdi, PD_HI
    mov ecx, 2048
    rep stosd
    mov qword [PD_LO + 511 * 8], 0x200000 | 0x83 ; 0xFFE0_0000 -> 0x200000 (2 MiB page)
    mov qword [PD_HI], 0x400000 | 0x83           ; 0x1_0000_0000 -> 0x400000
    mov qword [PDPT + 3 * 8], PD_LO | 3
    mov qword [PDPT + 4 * 8], PD_HI | 3
    mov rax, cr3
    mov cr3, rax

    mov r14, rsp                        ; the setup's stack, back at the end
    xor r15d, r15d
    mov r12d, 2000
.loop:
    mov rsp, 0x100000010                ; 16 bytes above the boundary
    mov rax, r12
    push rax                            ; 0x1_0000_0008
    push 0x1234                         ; 0x1_0000_0000
    push rax                            ; 0xFFFF_FFF8: the low half wraps
    call .leaf                          ; return address at 0xFFFF_FFF0
    pop rbx
    pop rcx
    pop rdx                             ; back above the boundary
    cmp rbx, r12
    jne .bad
    cmp rcx, 0x1234
    jne .bad
    cmp rdx, r12
    jne .bad
    mov rax, rsp
    cmp rax, [rel top]
    jne .bad
    add r15, rbx
    dec r12d
    jnz .loop
    mov rsp, r14
    mov rax, r15
    call hex64
    lea rsi, [rel ok_msg]
    call print64
    mov al, 0
    jmp exit64

.leaf:
    mov rax, [rsp + 8]                  ; the value pushed before the call
    add r15, rax
    ret

.bad:
    mov rsp, r14
    lea rsi, [rel bad_msg]
    call print64
    mov al, 2
    jmp exit64

top: dq 0x100000010
ok_msg: db " STACK4G OK", 10, 0
bad_msg: db "stack across 4 GiB broken", 10, 0
