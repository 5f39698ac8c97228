; Flag producers (ALU, shifts, rotates, INC/DEC) followed by every Jcc: each (producer, condition) pair over a table of edge
; values folds one bit into R15 (r15 = 3*r15 + taken). The test checks the block compiler, which
; fuses compares with branches, against the plain interpreter.
%include "lm_setup.inc"

%macro ONE 1
    j%1 %%t
    lea r15, [r15 + r15 * 2]
    jmp %%d
%%t:
    lea r15, [r15 + r15 * 2 + 1]
%%d:
%endmacro

main64:
    xor r15d, r15d
    mov ebp, 3                      ; run the whole table 3 times so blocks get hot
.pass:
    xor esi, esi
.outer:
    xor edi, edi
.inner:
    lea rdx, [rel table]
    mov rax, [rdx + rsi * 8]
    mov rbx, [rdx + rdi * 8]
    cmp rax, rbx
    ONE b
    cmp rax, rbx
    ONE ae
    cmp rax, rbx
    ONE e
    cmp rax, rbx
    ONE ne
    cmp rax, rbx
    ONE be
    cmp rax, rbx
    ONE a
    cmp rax, rbx
    ONE s
    cmp rax, rbx
    ONE ns
    cmp rax, rbx
    ONE l
    cmp rax, rbx
    ONE ge
    cmp rax, rbx
    ONE le
    cmp rax, rbx
    ONE g
    cmp rax, rbx
    ONE o
    cmp rax, rbx
    ONE no
    cmp rax, rbx
    ONE p
    cmp rax, rbx
    ONE np
    cmp eax, ebx
    ONE b
    cmp eax, ebx
    ONE ae
    cmp eax, ebx
    ONE e
    cmp eax, ebx
    ONE ne
    cmp eax, ebx
    ONE be
    cmp eax, ebx
    ONE a
    cmp eax, ebx
    ONE s
    cmp eax, ebx
    ONE ns
    cmp eax, ebx
    ONE l
    cmp eax, ebx
    ONE ge
    cmp eax, ebx
    ONE le
    cmp eax, ebx
    ONE g
    cmp eax, ebx
    ONE o
    cmp eax, ebx
    ONE no
    cmp eax, ebx
    ONE p
    cmp eax, ebx
    ONE np
    test rax, rbx
    ONE b
    test rax, rbx
    ONE ae
    test rax, rbx
    ONE e
    test rax, rbx
    ONE ne
    test rax, rbx
    ONE be
    test rax, rbx
    ONE a
    test rax, rbx
    ONE s
    test rax, rbx
    ONE ns
    test rax, rbx
    ONE l
    test rax, rbx
    ONE ge
    test rax, rbx
    ONE le
    test rax, rbx
    ONE g
    test rax, rbx
    ONE o
    test rax, rbx
    ONE no
    test rax, rbx
    ONE p
    test rax, rbx
    ONE np
    test eax, ebx
    ONE b
    test eax, ebx
    ONE ae
    test eax, ebx
    ONE e
    test eax, ebx
    ONE ne
    test eax, ebx
    ONE be
    test eax, ebx
    ONE a
    test eax, ebx
    ONE s
    test eax, ebx
    ONE ns
    test eax, ebx
    ONE l
    test eax, ebx
    ONE ge
    test eax, ebx
    ONE le
    test eax, ebx
    ONE g
    test eax, ebx
    ONE o
    test eax, ebx
    ONE no
    test eax, ebx
    ONE p
    test eax, ebx
    ONE np
    mov rcx, rax
    sub rcx, rbx
    ONE b
    mov rcx, rax
    sub rcx, rbx
    ONE ae
    mov rcx, rax
    sub rcx, rbx
    ONE e
    mov rcx, rax
    sub rcx, rbx
    ONE ne
    mov rcx, rax
    sub rcx, rbx
    ONE be
    mov rcx, rax
    sub rcx, rbx
    ONE a
    mov rcx, rax
    sub rcx, rbx
    ONE s
    mov rcx, rax
    sub rcx, rbx
    ONE ns
    mov rcx, rax
    sub rcx, rbx
    ONE l
    mov rcx, rax
    sub rcx, rbx
    ONE ge
    mov rcx, rax
    sub rcx, rbx
    ONE le
    mov rcx, rax
    sub rcx, rbx
    ONE g
    mov rcx, rax
    sub rcx, rbx
    ONE o
    mov rcx, rax
    sub rcx, rbx
    ONE no
    mov rcx, rax
    sub rcx, rbx
    ONE p
    mov rcx, rax
    sub rcx, rbx
    ONE np
    mov ecx, eax
    add ecx, ebx
    ONE b
    mov ecx, eax
    add ecx, ebx
    ONE ae
    mov ecx, eax
    add ecx, ebx
    ONE e
    mov ecx, eax
    add ecx, ebx
    ONE ne
    mov ecx, eax
    add ecx, ebx
    ONE be
    mov ecx, eax
    add ecx, ebx
    ONE a
    mov ecx, eax
    add ecx, ebx
    ONE s
    mov ecx, eax
    add ecx, ebx
    ONE ns
    mov ecx, eax
    add ecx, ebx
    ONE l
    mov ecx, eax
    add ecx, ebx
    ONE ge
    mov ecx, eax
    add ecx, ebx
    ONE le
    mov ecx, eax
    add ecx, ebx
    ONE g
    mov ecx, eax
    add ecx, ebx
    ONE o
    mov ecx, eax
    add ecx, ebx
    ONE no
    mov ecx, eax
    add ecx, ebx
    ONE p
    mov ecx, eax
    add ecx, ebx
    ONE np
    mov rcx, rax
    and rcx, rbx
    ONE b
    mov rcx, rax
    and rcx, rbx
    ONE ae
    mov rcx, rax
    and rcx, rbx
    ONE e
    mov rcx, rax
    and rcx, rbx
    ONE ne
    mov rcx, rax
    and rcx, rbx
    ONE be
    mov rcx, rax
    and rcx, rbx
    ONE a
    mov rcx, rax
    and rcx, rbx
    ONE s
    mov rcx, rax
    and rcx, rbx
    ONE ns
    mov rcx, rax
    and rcx, rbx
    ONE l
    mov rcx, rax
    and rcx, rbx
    ONE ge
    mov rcx, rax
    and rcx, rbx
    ONE le
    mov rcx, rax
    and rcx, rbx
    ONE g
    mov rcx, rax
    and rcx, rbx
    ONE o
    mov rcx, rax
    and rcx, rbx
    ONE no
    mov rcx, rax
    and rcx, rbx
    ONE p
    mov rcx, rax
    and rcx, rbx
    ONE np
    mov ecx, eax
    xor ecx, ebx
    ONE b
    mov ecx, eax
    xor ecx, ebx
    ONE ae
    mov ecx, eax
    xor ecx, ebx
    ONE e
    mov ecx, eax
    xor ecx, ebx
    ONE ne
    mov ecx, eax
    xor ecx, ebx
    ONE be
    mov ecx, eax
    xor ecx, ebx
    ONE a
    mov ecx, eax
    xor ecx, ebx
    ONE s
    mov ecx, eax
    xor ecx, ebx
    ONE ns
    mov ecx, eax
    xor ecx, ebx
    ONE l
    mov ecx, eax
    xor ecx, ebx
    ONE ge
    mov ecx, eax
    xor ecx, ebx
    ONE le
    mov ecx, eax
    xor ecx, ebx
    ONE g
    mov ecx, eax
    xor ecx, ebx
    ONE o
    mov ecx, eax
    xor ecx, ebx
    ONE no
    mov ecx, eax
    xor ecx, ebx
    ONE p
    mov ecx, eax
    xor ecx, ebx
    ONE np
    mov rcx, rax
    add rcx, rbx
    ONE b
    mov rcx, rax
    add rcx, rbx
    ONE ae
    mov rcx, rax
    add rcx, rbx
    ONE e
    mov rcx, rax
    add rcx, rbx
    ONE ne
    mov rcx, rax
    add rcx, rbx
    ONE be
    mov rcx, rax
    add rcx, rbx
    ONE a
    mov rcx, rax
    add rcx, rbx
    ONE s
    mov rcx, rax
    add rcx, rbx
    ONE ns
    mov rcx, rax
    add rcx, rbx
    ONE l
    mov rcx, rax
    add rcx, rbx
    ONE ge
    mov rcx, rax
    add rcx, rbx
    ONE le
    mov rcx, rax
    add rcx, rbx
    ONE g
    mov rcx, rax
    add rcx, rbx
    ONE o
    mov rcx, rax
    add rcx, rbx
    ONE no
    mov rcx, rax
    add rcx, rbx
    ONE p
    mov rcx, rax
    add rcx, rbx
    ONE np
    cmp eax, 0x7fffffff
    ONE b
    cmp eax, 0x7fffffff
    ONE ae
    cmp eax, 0x7fffffff
    ONE e
    cmp eax, 0x7fffffff
    ONE ne
    cmp eax, 0x7fffffff
    ONE be
    cmp eax, 0x7fffffff
    ONE a
    cmp eax, 0x7fffffff
    ONE s
    cmp eax, 0x7fffffff
    ONE ns
    cmp eax, 0x7fffffff
    ONE l
    cmp eax, 0x7fffffff
    ONE ge
    cmp eax, 0x7fffffff
    ONE le
    cmp eax, 0x7fffffff
    ONE g
    cmp eax, 0x7fffffff
    ONE o
    cmp eax, 0x7fffffff
    ONE no
    cmp eax, 0x7fffffff
    ONE p
    cmp eax, 0x7fffffff
    ONE np
    cmp rax, -2
    ONE b
    cmp rax, -2
    ONE ae
    cmp rax, -2
    ONE e
    cmp rax, -2
    ONE ne
    cmp rax, -2
    ONE be
    cmp rax, -2
    ONE a
    cmp rax, -2
    ONE s
    cmp rax, -2
    ONE ns
    cmp rax, -2
    ONE l
    cmp rax, -2
    ONE ge
    cmp rax, -2
    ONE le
    cmp rax, -2
    ONE g
    cmp rax, -2
    ONE o
    cmp rax, -2
    ONE no
    cmp rax, -2
    ONE p
    cmp rax, -2
    ONE np
    mov ecx, eax
    shr ecx, 1
    ONE b
    mov ecx, eax
    shr ecx, 1
    ONE ae
    mov ecx, eax
    shr ecx, 1
    ONE e
    mov ecx, eax
    shr ecx, 1
    ONE ne
    mov ecx, eax
    shr ecx, 1
    ONE be
    mov ecx, eax
    shr ecx, 1
    ONE a
    mov ecx, eax
    shr ecx, 1
    ONE s
    mov ecx, eax
    shr ecx, 1
    ONE ns
    mov ecx, eax
    shr ecx, 1
    ONE l
    mov ecx, eax
    shr ecx, 1
    ONE ge
    mov ecx, eax
    shr ecx, 1
    ONE le
    mov ecx, eax
    shr ecx, 1
    ONE g
    mov ecx, eax
    shr ecx, 1
    ONE o
    mov ecx, eax
    shr ecx, 1
    ONE no
    mov ecx, eax
    shr ecx, 1
    ONE p
    mov ecx, eax
    shr ecx, 1
    ONE np
    mov rcx, rax
    sar rcx, 7
    ONE b
    mov rcx, rax
    sar rcx, 7
    ONE ae
    mov rcx, rax
    sar rcx, 7
    ONE e
    mov rcx, rax
    sar rcx, 7
    ONE ne
    mov rcx, rax
    sar rcx, 7
    ONE be
    mov rcx, rax
    sar rcx, 7
    ONE a
    mov rcx, rax
    sar rcx, 7
    ONE s
    mov rcx, rax
    sar rcx, 7
    ONE ns
    mov rcx, rax
    sar rcx, 7
    ONE l
    mov rcx, rax
    sar rcx, 7
    ONE ge
    mov rcx, rax
    sar rcx, 7
    ONE le
    mov rcx, rax
    sar rcx, 7
    ONE g
    mov rcx, rax
    sar rcx, 7
    ONE o
    mov rcx, rax
    sar rcx, 7
    ONE no
    mov rcx, rax
    sar rcx, 7
    ONE p
    mov rcx, rax
    sar rcx, 7
    ONE np
    mov ecx, eax
    shl ecx, 31
    ONE b
    mov ecx, eax
    shl ecx, 31
    ONE ae
    mov ecx, eax
    shl ecx, 31
    ONE e
    mov ecx, eax
    shl ecx, 31
    ONE ne
    mov ecx, eax
    shl ecx, 31
    ONE be
    mov ecx, eax
    shl ecx, 31
    ONE a
    mov ecx, eax
    shl ecx, 31
    ONE s
    mov ecx, eax
    shl ecx, 31
    ONE ns
    mov ecx, eax
    shl ecx, 31
    ONE l
    mov ecx, eax
    shl ecx, 31
    ONE ge
    mov ecx, eax
    shl ecx, 31
    ONE le
    mov ecx, eax
    shl ecx, 31
    ONE g
    mov ecx, eax
    shl ecx, 31
    ONE o
    mov ecx, eax
    shl ecx, 31
    ONE no
    mov ecx, eax
    shl ecx, 31
    ONE p
    mov ecx, eax
    shl ecx, 31
    ONE np
    mov ecx, eax
    rol ecx, 1
    ONE b
    mov ecx, eax
    rol ecx, 1
    ONE ae
    mov ecx, eax
    rol ecx, 1
    ONE e
    mov ecx, eax
    rol ecx, 1
    ONE ne
    mov ecx, eax
    rol ecx, 1
    ONE be
    mov ecx, eax
    rol ecx, 1
    ONE a
    mov ecx, eax
    rol ecx, 1
    ONE s
    mov ecx, eax
    rol ecx, 1
    ONE ns
    mov ecx, eax
    rol ecx, 1
    ONE l
    mov ecx, eax
    rol ecx, 1
    ONE ge
    mov ecx, eax
    rol ecx, 1
    ONE le
    mov ecx, eax
    rol ecx, 1
    ONE g
    mov ecx, eax
    rol ecx, 1
    ONE o
    mov ecx, eax
    rol ecx, 1
    ONE no
    mov ecx, eax
    rol ecx, 1
    ONE p
    mov ecx, eax
    rol ecx, 1
    ONE np
    mov ecx, eax
    inc ecx
    ONE b
    mov ecx, eax
    inc ecx
    ONE ae
    mov ecx, eax
    inc ecx
    ONE e
    mov ecx, eax
    inc ecx
    ONE ne
    mov ecx, eax
    inc ecx
    ONE be
    mov ecx, eax
    inc ecx
    ONE a
    mov ecx, eax
    inc ecx
    ONE s
    mov ecx, eax
    inc ecx
    ONE ns
    mov ecx, eax
    inc ecx
    ONE l
    mov ecx, eax
    inc ecx
    ONE ge
    mov ecx, eax
    inc ecx
    ONE le
    mov ecx, eax
    inc ecx
    ONE g
    mov ecx, eax
    inc ecx
    ONE o
    mov ecx, eax
    inc ecx
    ONE no
    mov ecx, eax
    inc ecx
    ONE p
    mov ecx, eax
    inc ecx
    ONE np
    mov ecx, eax
    dec ecx
    ONE b
    mov ecx, eax
    dec ecx
    ONE ae
    mov ecx, eax
    dec ecx
    ONE e
    mov ecx, eax
    dec ecx
    ONE ne
    mov ecx, eax
    dec ecx
    ONE be
    mov ecx, eax
    dec ecx
    ONE a
    mov ecx, eax
    dec ecx
    ONE s
    mov ecx, eax
    dec ecx
    ONE ns
    mov ecx, eax
    dec ecx
    ONE l
    mov ecx, eax
    dec ecx
    ONE ge
    mov ecx, eax
    dec ecx
    ONE le
    mov ecx, eax
    dec ecx
    ONE g
    mov ecx, eax
    dec ecx
    ONE o
    mov ecx, eax
    dec ecx
    ONE no
    mov ecx, eax
    dec ecx
    ONE p
    mov ecx, eax
    dec ecx
    ONE np
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE b
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE ae
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE e
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE ne
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE be
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE a
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE s
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE ns
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE l
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE ge
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE le
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE g
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE o
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE no
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE p
    cmp eax, ebx
    mov ecx, eax
    shl ecx, 0
    ONE np
    cmp eax, ebx
    inc ecx
    ONE b
    cmp eax, ebx
    inc ecx
    ONE ae
    cmp eax, ebx
    inc ecx
    ONE e
    cmp eax, ebx
    inc ecx
    ONE ne
    cmp eax, ebx
    inc ecx
    ONE be
    cmp eax, ebx
    inc ecx
    ONE a
    cmp eax, ebx
    inc ecx
    ONE s
    cmp eax, ebx
    inc ecx
    ONE ns
    cmp eax, ebx
    inc ecx
    ONE l
    cmp eax, ebx
    inc ecx
    ONE ge
    cmp eax, ebx
    inc ecx
    ONE le
    cmp eax, ebx
    inc ecx
    ONE g
    cmp eax, ebx
    inc ecx
    ONE o
    cmp eax, ebx
    inc ecx
    ONE no
    cmp eax, ebx
    inc ecx
    ONE p
    cmp eax, ebx
    inc ecx
    ONE np
    inc edi
    cmp edi, 10
    jb .inner
    inc esi
    cmp esi, 10
    jb .outer
    dec ebp
    jnz .pass
    mov rax, r15
    call hex64
    lea rsi, [rel nl]
    call print64
    mov al, 0
    jmp exit64

align 8
table: dq 0, 1, -1, 0x7fffffff, 0x80000000, 0xffffffff, 0x8000000000000000, 0x7fffffffffffffff, 0x100000000, -0x80000001
nl: db 10, 0
