; Self-modifying code: a function runs often enough to be decoded, cached and compiled, then the
; guest rewrites its immediate operand; the next call must see the new instruction.
%include "lm_setup.inc"

main64:
    mov ecx, 200
.l:
    call patched
    cmp eax, 1
    jne fail
    loop .l
    mov byte [rel patched + 1], 2        ; mov eax, 1 -> mov eax, 2
    call patched
    cmp eax, 2
    jne fail
    lea rsi, [rel ok_msg]
    call print64
    mov al, 0
    jmp exit64

patched:
    mov eax, 1
    ret

ok_msg: db "SMC OK", 10, 0
