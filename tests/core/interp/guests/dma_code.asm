; Device writes over hot code (the page-state map, core/page_state.ts). A routine runs hot (1000
; calls, past the block compiler's threshold of 400); an MMIO write asks the test's device to
; overwrite it with `mov eax, 2; ret`, which it does during the access; the next call must return
; 2. Then a hot routine whose MMIO write has the device rewrite the instruction right after it,
; in the same block. Then a loop that is one self-looping block spins on its own immediate while
; the device has a writer on another thread change that immediate (no I/O in the loop: the vCPU
; must notice at a block boundary). Prints "DMA OK".
; Build (in this directory): nasm -f bin -o dma_code.bin dma_code.asm
%include "lm_setup.inc"

MMIO equ 0xc0000000

main64:
    ; Map 3 GiB with a 1 GiB page (PDPT entry 3, PS): the test's MMIO device.
    mov rax, 0xc0000000 | 0x83
    mov [PDPT + 3 * 8], rax
    mov rbx, MMIO
    mov ecx, 1000
.warm:
    call routine
    cmp eax, 1
    jne fail
    loop .warm
    lea rax, [rel routine]
    mov [rbx], eax                  ; the device writes the new routine now
    call routine
    cmp eax, 2
    jne fail
    xor edx, edx
    mov ecx, 1000
.warm2:
    call probe
    cmp eax, 1
    jne fail
    loop .warm2
    lea rdx, [rel probe_imm]
    call probe                      ; the device writes 2 over probe_imm during the access
    cmp eax, 2
    jne fail
    lea rax, [rel spin + 1]
    mov [rbx + 8], eax              ; the device starts a writer on another thread
spin:
    mov eax, 0x2222                 ; the writer makes this 0x3333
    cmp eax, 0x2222
    je spin
    cmp eax, 0x3333
    jne fail
    lea rsi, [rel ok_msg]
    call print64
    mov al, 0
    jmp exit64

ok_msg: db "DMA OK", 10, 0

    align 4096                      ; a page of its own: no stack or data writes reach it
routine:
    mov eax, 1
    ret

probe:                              ; EDX = 0, or where the device writes the dword 2
    mov [rbx + 16], edx
    mov eax, 1
probe_imm equ $ - 4
    ret
