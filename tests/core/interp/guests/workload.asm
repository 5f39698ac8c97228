; Timer-free integer workload: a sieve of Eratosthenes, a bitwise CRC-32 over the sieve bytes,
; and a xorshift64* sequence summed and divided in 64 bits. Prints the results in hex; the test
; recomputes them in TypeScript. The dword at 0x500 gives the repetition count (0 means 1), so
; the benchmark can run the same code longer.
%include "lm_setup.inc"

N      equ 65536
FLAGS  equ 0x100000
XSTEPS equ 10000

main64:
    mov r15d, [0x500]
    test r15d, r15d
    jnz .rep
    mov r15d, 1
.rep:
    call sieve
    call crc
    call xorshift
    dec r15d
    jnz .rep
    lea rsi, [rel p_msg]
    call print64
    mov rax, r12
    call hex64
    lea rsi, [rel s_msg]
    call print64
    mov rax, r13
    call hex64
    lea rsi, [rel c_msg]
    call print64
    mov rax, r14
    call hex64
    lea rsi, [rel x_msg]
    call print64
    mov rax, rbx
    call hex64
    lea rsi, [rel q_msg]
    call print64
    mov rax, r10
    call hex64
    lea rsi, [rel r_msg]
    call print64
    mov rax, r11
    call hex64
    lea rsi, [rel nl]
    call print64
    mov al, 0
    jmp exit64

; -> r12 = prime count, r13 = sum of primes
sieve:
    mov rdi, FLAGS
    mov rcx, N / 8
    xor eax, eax
    rep stosq
    mov ecx, 2
.outer:
    mov eax, ecx
    imul eax, ecx
    cmp eax, N
    jae .count
    cmp byte [FLAGS + rcx], 0
    jne .next
.inner:
    mov byte [FLAGS + rax], 1
    add eax, ecx
    cmp eax, N
    jb .inner
.next:
    inc ecx
    jmp .outer
.count:
    xor r12d, r12d
    xor r13d, r13d
    mov ecx, 2
.c:
    movzx eax, byte [FLAGS + rcx]
    test eax, eax
    setz al
    add r12, rax
    mov rdx, rcx
    neg rax
    and rdx, rax
    add r13, rdx
    inc ecx
    cmp ecx, N
    jb .c
    ret

; -> r14 = CRC-32 (reflected, poly 0xEDB88320) of the N sieve bytes
crc:
    mov r8d, 0xffffffff
    mov rsi, FLAGS
    mov ecx, N
.byte:
    movzx eax, byte [rsi]
    xor r8d, eax
    mov edx, 8
.bit:
    shr r8d, 1
    jnc .nox
    xor r8d, 0xedb88320
.nox:
    dec edx
    jnz .bit
    inc rsi
    loop .byte
    not r8d
    mov r14, r8
    ret

; -> rbx = sum of xorshift64* outputs, r10 = rbx / 1000003, r11 = rbx % 1000003
xorshift:
    mov rax, 0x9e3779b97f4a7c15
    xor ebx, ebx
    mov r9, 0x2545f4914f6cdd1d
    mov ecx, XSTEPS
.x:
    mov rdx, rax
    shr rdx, 12
    xor rax, rdx
    mov rdx, rax
    shl rdx, 25
    xor rax, rdx
    mov rdx, rax
    shr rdx, 27
    xor rax, rdx
    mov rdi, rax
    imul rdi, r9
    add rbx, rdi
    dec ecx
    jnz .x
    mov rax, rbx
    xor edx, edx
    mov rdi, 1000003
    div rdi
    mov r10, rax
    mov r11, rdx
    ret

p_msg: db "P=", 0
s_msg: db " S=", 0
c_msg: db " C=", 0
x_msg: db " X=", 0
q_msg: db " Q=", 0
r_msg: db " R=", 0
nl: db 10, 0
