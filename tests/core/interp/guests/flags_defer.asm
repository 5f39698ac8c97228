; Held-back flag stores in the block compiler: an ALU or shift producer (32 and 64 bits), then an inline
; INC/DEC that must take CF from it, then readers of every flag (PUSHFQ, ADC, SETC, JC) and a
; memory access between producer and reader. Operands come from xorshift64 so that carries,
; borrows, zeros and signs all occur; each reading folds into R15. The test compares the block
; compiler with the plain interpreter (which is checked against silicon by the difftest).
%include "lm_setup.inc"

DATA equ 0x280000

%macro MIX 0                        ; r15 = r15 * 31 + (RFLAGS & arithmetic flags)
    pushfq
    pop rax
    and eax, 0x8d5
    imul r15, r15, 31
    add r15, rax
%endmacro

%macro J1 1                        ; r15 = 3*r15 + (condition %1 taken): odd, so nothing is lost
    j%1 %%t
    lea r15, [r15 + r15 * 2]
    jmp %%d
%%t:
    lea r15, [r15 + r15 * 2 + 1]
%%d:
%endmacro

%macro BYTECASE 2                   ; a byte compare/test, then every condition on its flags
    %1 %2
    J1 b
    %1 %2
    J1 be
    %1 %2
    J1 e
    %1 %2
    J1 s
    %1 %2
    J1 l
    %1 %2
    J1 le
    %1 %2
    J1 g
    %1 %2
    J1 ge
    %1 %2
    J1 a
    %1 %2
    J1 ae
    %1 %2
    J1 ns
    %1 %2
    J1 ne
%endmacro

%macro JOIN 0                      ; forward branches inside a block: flags read where paths meet
    mov rax, r8
    cmp rax, r9
    jb %%a                          ; taken: the compare's flags must arrive with it
    mov r10, rax
%%a:
    MIX
    mov rax, r8
    cmp eax, r9d
    je %%b
    add eax, 1                      ; the fall-through path's own producer
%%b:
    MIX
    mov rax, r8
    test al, 3
    jnz %%c
    sub rax, r9
    jc %%c                          ; two branches to one target
    xor eax, eax
%%c:
    adc r15, 0
    MIX
    mov rax, r8
    cmp rax, r9                     ; CMOVcc and SETcc on a compare's operands
    cmovb r10, r8
    cmova r10, r9
    setl al
    cmovle eax, r9d
    sete ah
    add r15, r10
    add r15, rax
    MIX
%endmacro

%macro CASE 3                       ; producer op, operand width register pair, INC or DEC
    mov rax, r8
    %1 %2, %3
    dec ecx
    MIX
    mov rax, r8
    %1 %2, %3
    inc ecx
    adc r15, 0
    mov rax, r8
    %1 %2, %3
    dec ecx
    inc edx
    setc al
    movzx eax, al
    add r15, rax
    mov rax, r8
    %1 %2, %3
    mov r10, [rel scratch]          ; a load between producer and reader
    dec ecx
    jc %%c
    add r15, 7
%%c:
    mov rax, r8
    %1 %2, %3
    mov r10, rax                    ; the producer's own flags, read after a move
    MIX
    mov rax, r8
    %1 %2, %3
    dec rcx                         ; 64-bit INC/DEC keep CF too
    adc r15, 0
    inc rdx
    MIX
%endmacro

main64:
    xor r15d, r15d
    mov r8, 0x9e3779b97f4a7c15
    mov r9, 0x0123456789abcdef
    mov r12d, 3000
.loop:
    ; xorshift64 on r8 and r9; every 8th round equal operands
    mov rax, r8
    shl rax, 13
    xor r8, rax
    mov rax, r8
    shr rax, 7
    xor r8, rax
    mov rax, r8
    shl rax, 17
    xor r8, rax
    mov r9, r8
    ror r9, 29
    test r12d, 7
    jnz .go
    mov r9, r8
    test r12d, 8
    jnz .go
    xor r9d, r9d                    ; and every 16th a zero operand
.go:
    mov ecx, r12d
    and ecx, 3                      ; ECX near zero so that INC/DEC results hit 0 and -1
    mov edx, ecx
    CASE add, eax, r9d
    CASE sub, eax, r9d
    CASE cmp, eax, r9d
    CASE and, eax, r9d
    CASE or, eax, r9d
    CASE xor, eax, r9d
    CASE test, eax, r9d
    CASE add, rax, r9
    CASE sub, rax, r9
    CASE cmp, rax, r9
    CASE and, rax, r9
    CASE xor, rax, r9
    CASE shr, rax, 7                  ; shifts by a constant (eager flags, held back too)
    CASE shl, eax, 3
    CASE sar, rax, 33
    CASE shl, rax, 1
    CASE sar, eax, 31
    CASE shr, eax, 1
    JOIN
%assign k 0
%rep 4                              ; shifts by constants, then a branch on CF, ZF or SF
    mov rax, r8
    shr rax, 7 + k
    J1 c
    mov rax, r8
    shl eax, 3 + k
    J1 nc
    mov rax, r9
    sar rax, 3 + k
    J1 s
    mov rax, r8
    shr eax, 29 + k
    J1 z
    mov rax, r9
    shl rax, 1
    J1 ns
    mov rax, r8
    sar eax, 1
    J1 nz
    MIX
%assign k k + 1
%endrep
    mov eax, r8d
    mov ebx, r9d
    BYTECASE cmp, {al, bl}          ; byte producers with fused branches
    BYTECASE cmp, {ah, bh}
    BYTECASE test, {al, bl}
    BYTECASE cmp, {al, 0x80}
    BYTECASE test, {al, 0x81}
    BYTECASE cmp, {byte [DATA], bl}
    mov [DATA], al                  ; (a data page: a store to the code's page drops its blocks)
    add al, bl
    J1 c
    sub bl, ah
    J1 s
    xor al, bh
    MIX
    dec r12d
    jnz .loop

    mov rax, r15
    call hex64
    lea rsi, [rel ok_msg]
    call print64
    mov al, 0
    jmp exit64

scratch: dq 0
ok_msg: db " FLAGS OK", 10, 0
