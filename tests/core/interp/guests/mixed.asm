; Mixed ALU/SSE2 long-mode workload (the `interp mips (mixed alu/sse2)` bench row, issue 12):
; each iteration draws operands from a 64-bit xorshift PRNG and runs integer ALU ops at every
; width, shifts and rotates (imm and CL counts, SHLD/SHRD), MUL/IMUL (1, 2, 3 operands) and
; DIV/IDIV (divisors non-zero, quotients that fit), JCC/SETCC/CMOVCC on all 16 conditions, ADC/SBB
; chains, SSE2 integer ops and SSE2 scalar/packed double arithmetic and conversions. Every result
; is folded into checksums printed on the serial port at the end, so two machines that print the
; same line did the same work. Only flags the manuals define are consumed (no OF after multi-bit
; shifts, nothing but CF/OF after MUL, no flags after DIV), so QEMU TCG, KVM and the interpreter
; must agree bit for bit, on either vendor. The dword at 0x500 gives the repetition count (0 means
; 1); the PRNG and checksums carry over between repetitions, so each count prints its own line.
; The work itself is `mix_run`, a plain user-mode System V function, so the host CPU can run it
; too (tests/mixed_guest_test.ts); main64 only enables SSE, calls it and prints its results.
; Build: cd tests/core/interp/guests && nasm -f bin -o mixed.bin mixed.asm
%include "lm_setup.inc"

ITER   equ 5000                 ; iterations per repetition
BUF    equ 0x100000             ; mix_run's work area (16-byte aligned), above the image
; Results in the work area: integer sum, 192-bit ADC/SBB sum (low first), double-bits sum, the
; bounded double, the vector sum (16 bytes).
R_I    equ 64
R_A    equ 72
R_F    equ 96
R_D    equ 104
R_V    equ 112

; %1 = the next xorshift64 output (13, 7, 17); %1 is the scratch register.
%macro RND 1
    mov %1, r8
    shl %1, 13
    xor r8, %1
    mov %1, r8
    shr %1, 7
    xor r8, %1
    mov %1, r8
    shl %1, 17
    xor r8, %1
    mov %1, r8
%endmacro

; Folds 64-bit register %1 into the integer checksum r9 (clobbers flags).
%macro FOLD 1
    rol r9, 5
    xor r9, %1
%endmacro

; Folds 64-bit register %1 into the floating-point checksum r13 (clobbers flags).
%macro FFOLD 1
    rol r13, 11
    add r13, %1
%endmacro

; JCC on condition %1: the not-taken path adds %2 to r9 with LEA (flags kept for the next one).
%macro JCC 2
    j%1 %%taken
    lea r9, [r9 + %2]
%%taken:
%endmacro

; SETCC on condition %1 into dil (rdi is 0 or 1), r9 = 3 * r9 + bit (flags kept).
%macro SETCC 1
    set%1 dil
    lea r9, [r9 + r9 * 2]
    lea r9, [r9 + rdi]
%endmacro

; CMOVCC on condition %1 of %3 into %2 (rdx seeded from rsi first), r9 = 3 * r9 + rdx.
%macro CMOVCC 3
    mov rdx, rsi
    cmov%1 %2, %3
    lea r9, [r9 + r9 * 2]
    lea r9, [r9 + rdx]
%endmacro

main64:
    mov rax, cr0
    and eax, ~0x4               ; EM off, MP on: SSE instructions run
    or eax, 0x2
    mov cr0, rax
    mov rax, cr4
    or eax, 0x600               ; OSFXSR | OSXMMEXCPT
    mov cr4, rax
    mov edi, BUF
    mov esi, [0x500]
    test esi, esi
    jnz .go
    mov esi, 1
.go:
    call mix_run
    lea rsi, [rel i_msg]
    call print64
    mov rax, [BUF + R_I]
    call hex64
    lea rsi, [rel a_msg]
    call print64
    mov rax, [BUF + R_A + 16]
    call hex64
    mov rax, [BUF + R_A + 8]
    call hex64
    mov rax, [BUF + R_A]
    call hex64
    lea rsi, [rel f_msg]
    call print64
    mov rax, [BUF + R_F]
    call hex64
    lea rsi, [rel d_msg]
    call print64
    mov rax, [BUF + R_D]
    call hex64
    lea rsi, [rel v_msg]
    call print64
    mov rax, [BUF + R_V + 8]
    call hex64
    mov rax, [BUF + R_V]
    call hex64
    lea rsi, [rel nl]
    call print64
    mov al, 0
    jmp exit64

; The work, as a System V function that runs the same on the host CPU (tests/mixed_guest_test.ts
; calls it through FFI): position-independent, user-mode only, callee-saved registers and the
; caller's MXCSR kept. RDI = a 16-byte-aligned 128-byte work area (operands at 0..63, results at
; R_*), ESI = repetitions. The signature lets the test find it in the image.
align 16
    db "MIXRUN64"
mix_run:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov rbp, rdi
    mov r15d, esi
    stmxcsr [rbp + 56]          ; the caller's
    mov dword [rbp + 60], 0x1f80
    ldmxcsr [rbp + 60]          ; defaults, no sticky flags: the same start everywhere
    mov r8, 0x9e3779b97f4a7c15  ; PRNG state
    xor r9d, r9d                ; integer checksum
    xor r10d, r10d              ; r12:r11:r10 = 192-bit ADC/SBB accumulator
    xor r11d, r11d
    xor r12d, r12d
    xor r13d, r13d              ; floating-point checksum
    pxor xmm15, xmm15           ; vector checksum
    mov rax, 0x3ff0000000000000
    movq xmm14, rax             ; bounded double accumulator (1.0)
.rep:
    mov r14d, ITER
.iter:
    ; ---- integer ALU at 64/32/16/8 bits, register and memory operands
    RND rax
    RND rbx
    mov [rbp], rax
    mov [rbp + 8], rbx
    mov rcx, rax
    add rcx, rbx
    adc r9, rcx
    mov rdx, rax
    sub rdx, rbx
    sbb r9, rdx
    mov esi, eax
    and esi, ebx
    or si, ax
    xor sil, bl
    add r9, rsi
    mov rdi, rbx
    not rdi
    neg rdi
    adc r9, rdi
    inc edi
    dec di
    inc dil
    FOLD rdi
    add [rbp], rbx
    adc [rbp + 8], rax
    sub rcx, [rbp + 8]
    sbb edx, [rbp + 4]
    and cx, [rbp + 2]
    or dl, [rbp + 9]
    xor rcx, [rbp]
    FOLD rcx
    FOLD rdx
    cmp eax, ebx
    sbb r9, 0
    test al, bl
    adc r9, 0                   ; TEST clears CF: r9 unchanged, but the ADC runs
    cmp bx, ax
    adc r9, 0x1234
    pushfq                      ; all six status flags of a SUB
    sub rax, rbx
    pushfq
    pop rdx
    popfq
    and edx, 0x8d5              ; OF SF ZF AF PF CF
    FOLD rdx
    neg bx
    FOLD rbx
    ; ---- ADC/SBB chains: 192-bit accumulate and subtract
    add r10, rax
    adc r11, rbx
    adc r12, rcx
    sub r10, rdx
    sbb r11, rsi
    sbb r12, 0

    ; ---- JCC on all 16 conditions, after 64-bit and 16-bit compares of random values
    RND rax
    RND rbx
    cmp rax, rbx
    JCC o, 3
    JCC no, 5
    JCC b, 7
    JCC ae, 11
    JCC e, 13
    JCC ne, 17
    JCC be, 19
    JCC a, 23
    cmp ax, bx
    JCC s, 29
    JCC ns, 31
    JCC p, 37
    JCC np, 41
    JCC l, 43
    JCC ge, 47
    JCC le, 53
    JCC g, 59
    sub al, bl                  ; 8-bit: overflow and sign flips are frequent
    JCC o, 61
    JCC l, 67
    JCC le, 71
    JCC s, 73
    dec eax                     ; DEC keeps CF: the JB tests the SUB's carry
    JCC b, 79
    JCC e, 83
    JCC o, 89
    ; ---- SETCC on all 16 conditions after a 32-bit compare
    RND rcx
    RND rdx
    xor edi, edi
    cmp ecx, edx
    SETCC o
    SETCC no
    SETCC b
    SETCC ae
    SETCC e
    SETCC ne
    SETCC be
    SETCC a
    SETCC s
    SETCC ns
    SETCC p
    SETCC np
    SETCC l
    SETCC ge
    SETCC le
    SETCC g
    ; ---- CMOVCC on all 16 conditions, 64/32/16-bit and memory sources
    mov [rbp + 16], rcx
    mov rsi, rax
    add rcx, rdx                ; a carry half the time
    CMOVCC o, rdx, rbx
    CMOVCC no, edx, ebx         ; 32-bit CMOV zero-extends even when not taken
    CMOVCC b, rdx, [rbp + 16]
    CMOVCC ae, edx, [rbp + 20]
    CMOVCC e, dx, bx
    CMOVCC ne, rdx, rcx
    CMOVCC be, edx, ecx
    CMOVCC a, dx, [rbp + 18]
    xor ecx, ebx                ; SF/ZF/PF from a 32-bit XOR
    CMOVCC s, rdx, rbx
    CMOVCC ns, edx, ecx
    CMOVCC p, rdx, [rbp + 16]
    CMOVCC np, edx, ebx
    sub eax, ebx
    CMOVCC l, rdx, rbx
    CMOVCC ge, edx, ebx
    CMOVCC le, dx, cx
    CMOVCC g, rdx, rcx

    ; ---- shifts and rotates: immediate and CL counts, consuming CF (and SF/ZF/PF after SHx)
    RND rax
    RND rbx
    mov ecx, eax
    shr ecx, 17                 ; CL = a random count (bits 17..24 of rax); CF defined
    mov rdx, rbx
    shl rdx, cl                 ; 64-bit: count & 63 (CL = 0 keeps the SHR's flags)
    adc r9, rdx
    mov rdx, rbx
    shr rdx, cl
    setc dil
    sets sil
    FOLD rdx
    add r9, rdi
    add r9, rsi
    mov edx, ebx
    sar edx, cl                 ; 32-bit: count & 31
    cmovz edx, eax
    FOLD rdx
    mov rdx, rax
    sar rdx, 1
    seto dil                    ; OF is defined for a count of 1
    FOLD rdx
    add r9, rdi
    rol rdx, 13
    adc r9, 0
    ror edx, cl
    adc r9, 0
    rol rdx, cl
    sbb r9, rdx
    shl bx, 3                   ; 8/16-bit shifts: imm counts below the width
    adc r9, rbx
    shr bl, 5
    adc r9, rbx
    sar ax, 9
    adc r9, rax
    rol al, 3
    adc r9, rax
    ror bx, 7
    adc r9, rbx
    cmp rax, rbx                ; a fresh CF for the RCx
    rcl rbx, 1
    rcr rax, 7
    rcl edx, cl
    rcr rbx, cl
    adc r9, rbx
    FOLD rax
    FOLD rdx
    cmp ecx, 0x80               ; RCL/RCR 8/16 with CL: count mod 9 / mod 17
    rcl dx, cl
    rcr dl, cl
    adc r9, rdx
    mov rdx, rax
    shld rdx, rbx, 19
    adc r9, rdx
    shrd rdx, rbx, 45
    adc r9, rdx
    shld rdx, rbx, cl
    adc r9, rdx
    shrd edx, ebx, cl
    adc r9, rdx
    shld dx, bx, 5
    adc r9, rdx
    shrd dx, bx, 11
    js .s1
    add r9, 0x55
.s1:
    shr rax, 1
    adc r9, 0
    shl rbx, 63
    jz .s2
    add r9, 0x77
.s2:
    FOLD rax

    ; ---- MUL/IMUL (1, 2, 3 operands; CF/OF only) and DIV/IDIV (non-zero divisors, no overflow)
    RND rax
    RND rbx
    mov rsi, rax
    mul rbx                     ; rdx:rax = rax * rbx
    adc r9, rdx
    FOLD rax
    mov rax, rsi
    imul rbx
    seto dil
    add r9, rdi
    FOLD rdx
    mov rax, rsi
    shr rax, 40                 ; 24-bit x random: no overflow sometimes
    imul rax, rbx
    jo .m1
    add r9, 0x101
.m1:
    FOLD rax
    imul rcx, rbx, 0x12345
    cmovc rcx, rsi
    FOLD rcx
    mov [rbp + 24], rsi
    imul ecx, [rbp + 28], -7
    FOLD rcx
    imul cx, bx
    adc r9, rcx
    mov eax, esi
    mul ebx
    adc r9, rax
    FOLD rdx
    mov eax, esi
    imul ebx
    FOLD rax
    mov eax, esi
    mul bl                      ; ax = al * bl
    adc r9, rax
    mov eax, esi
    imul bl
    FOLD rax
    mov eax, esi
    mul bx                      ; dx:ax = ax * bx
    FOLD rdx
    ; DIV r64: divisor with its top bit set, dividend high half with it clear, so rdx < divisor
    RND rax
    RND rdi
    RND rdx
    bts rdi, 63
    btr rdx, 63
    div rdi
    FOLD rax
    FOLD rdx
    ; DIV r64 by a small divisor (rdx = 0)
    RND rax
    mov rdi, rbx
    shr rdi, 44
    or rdi, 1
    xor edx, edx
    div rdi
    FOLD rax
    FOLD rdx
    ; IDIV r64: |dividend| < 2^62 (never INT64_MIN), any non-zero divisor
    RND rax
    sar rax, 1
    cqo
    mov rdi, rbx
    sar rdi, 23
    or rdi, 1
    idiv rdi
    FOLD rax
    FOLD rdx
    ; DIV/IDIV r32, r16, r8
    RND rax
    mov edi, ebx
    or edi, 0x80000000
    mov edx, eax
    shr edx, 1
    div edi
    FOLD rax
    FOLD rdx
    RND rax
    sar eax, 1
    cdq
    mov edi, ebx
    sar edi, 9
    or edi, 1
    idiv edi
    FOLD rax
    FOLD rdx
    RND rax
    sar ax, 1
    cwd
    mov edi, ebx
    or di, 1
    idiv di
    FOLD rax
    FOLD rdx
    RND rax
    mov ecx, ebx
    and ah, 0x7f
    or cl, 0x80
    div cl                      ; ax / cl: ah < cl
    FOLD rax
    RND rax
    mov ecx, ebx
    sar al, 1
    cbw
    or cl, 1
    idiv cl
    FOLD rax

    ; ---- SSE2 integer: aligned and unaligned loads, arithmetic, compares, shuffles, unpacks
    RND rax
    RND rbx
    RND rcx
    RND rdx
    mov [rbp], rax
    mov [rbp + 8], rbx
    mov [rbp + 16], rcx
    mov [rbp + 24], rdx
    mov [rbp + 32], rax
    movdqa xmm0, [rbp]
    movdqu xmm1, [rbp + 8]
    movdqa xmm2, xmm0
    paddd xmm2, xmm1
    psubq xmm2, [rbp + 16]
    movdqa xmm3, xmm0
    pmullw xmm3, xmm1
    pmuludq xmm3, xmm2
    movdqa xmm4, xmm3
    pand xmm4, xmm1
    por xmm4, xmm2
    pxor xmm4, xmm0
    pshufd xmm5, xmm0, 0x44     ; low qword twice: its dwords compare equal to xmm0's
    pcmpeqd xmm5, xmm0
    pshufd xmm6, xmm2, 0x1b
    movdqa xmm7, xmm6
    punpcklbw xmm6, xmm3
    punpckhwd xmm7, xmm4
    movdqa xmm8, xmm1
    punpckldq xmm8, xmm2
    punpckhqdq xmm8, xmm0
    psllq xmm6, 7
    psrldq xmm7, 5
    pslldq xmm8, 3
    psrad xmm5, 3
    psrlw xmm4, 2
    movdqa xmm9, xmm0
    pcmpgtb xmm9, xmm1
    pmovmskb esi, xmm9
    FOLD rsi
    movdqa xmm10, xmm1
    paddusb xmm10, xmm0
    psubsw xmm10, xmm3
    pmaddwd xmm10, xmm2
    movdqa xmm11, xmm0
    psadbw xmm11, xmm1
    pminub xmm11, xmm4
    pmaxsw xmm11, xmm6
    pavgb xmm11, xmm7
    movdqa xmm12, xmm8
    packsswb xmm12, xmm10
    packuswb xmm12, xmm11
    pinsrw xmm12, eax, 5
    pextrw edi, xmm12, 3
    FOLD rdi
    movq rsi, xmm4
    FOLD rsi
    movd edi, xmm6
    FOLD rdi
    paddq xmm15, xmm4
    pxor xmm15, xmm5
    paddd xmm15, xmm6
    pxor xmm15, xmm7
    psubq xmm15, xmm8
    paddw xmm15, xmm10
    pxor xmm15, xmm11
    paddb xmm15, xmm12
    pshufd xmm15, xmm15, 0x39   ; rotate the lanes so every lane feeds every other

    ; ---- SSE2 double: conversions, scalar and packed arithmetic, min/max, compares
    cvtsi2sd xmm8, rax          ; 64-bit signed (rounded to 53 bits)
    cvtsi2sd xmm9, ebx          ; 32-bit signed (exact)
    movapd xmm10, xmm8
    mulsd xmm10, xmm9
    addsd xmm10, xmm9
    movapd xmm11, xmm10
    divsd xmm11, xmm9           ; ebx = 0 would give an infinity: defined too
    movq rsi, xmm11
    FFOLD rsi
    movapd xmm12, xmm8
    andpd xmm12, [rel absmask]
    sqrtsd xmm12, xmm12
    movq rsi, xmm12
    FFOLD rsi
    movapd xmm13, xmm8
    minsd xmm13, xmm9
    maxsd xmm13, xmm12
    subsd xmm13, xmm10
    movq rsi, xmm13
    FFOLD rsi
    ucomisd xmm8, xmm9
    seta dil
    add r13, rdi
    ucomisd xmm9, xmm12
    jb .f1
    add r13, 0x33
.f1:
    comisd xmm10, xmm8
    cmovbe rsi, rax
    FFOLD rsi
    cvttsd2si rsi, xmm10        ; out of range gives 0x8000000000000000 (and IE)
    FFOLD rsi
    cvtsd2si edi, xmm12
    FFOLD rdi
    cvttsd2si edi, xmm11
    FFOLD rdi
    movapd xmm0, xmm8
    unpcklpd xmm0, xmm9         ; (rax, ebx)
    movapd xmm1, xmm12
    unpcklpd xmm1, xmm11
    movapd xmm2, xmm0
    mulpd xmm2, xmm1
    addpd xmm2, xmm0
    subpd xmm2, xmm1
    divpd xmm2, [rel twos]
    movq rsi, xmm2
    FFOLD rsi
    shufpd xmm2, xmm2, 1
    movq rsi, xmm2
    FFOLD rsi
    cvtsd2ss xmm3, xmm10
    cvtss2sd xmm3, xmm3
    movq rsi, xmm3
    FFOLD rsi
    cvtpd2dq xmm4, xmm1
    cvtdq2pd xmm4, xmm4
    movq rsi, xmm4
    FFOLD rsi
    ; the bounded accumulator: acc = acc / 2 + sqrt(|rax|) / 2^32
    mulsd xmm12, [rel two_m32]
    mulsd xmm14, [rel half]
    addsd xmm14, xmm12

    dec r14d
    jnz .iter
    stmxcsr [rbp + 48]          ; sticky exception flags (PE, IE from CVTTSD2SI) join the sum
    mov esi, [rbp + 48]
    FOLD rsi
    dec r15d
    jnz .rep
    mov [rbp + R_I], r9
    mov [rbp + R_A], r10
    mov [rbp + R_A + 8], r11
    mov [rbp + R_A + 16], r12
    mov [rbp + R_F], r13
    movq [rbp + R_D], xmm14
    movdqa [rbp + R_V], xmm15
    ldmxcsr [rbp + 56]
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret

align 16
absmask: dq 0x7fffffffffffffff, 0x7fffffffffffffff
twos: dq 2.0, 2.0
half: dq 0.5
two_m32: dq 0x3df0000000000000  ; 2^-32
i_msg: db "MIX I=", 0
a_msg: db " A=", 0
f_msg: db " F=", 0
d_msg: db " D=", 0
v_msg: db " V=", 0
nl: db 10, 0
