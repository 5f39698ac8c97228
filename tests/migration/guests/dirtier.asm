; Migration test guest (real mode, flat, loaded at 0000:7C00): keeps rewriting 64 KiB of RAM
; (segment 0x1000) so that a live migration needs several pre-copy passes. Each pass replaces
; every word by rol(word, 3) xor its offset plus the pass number and prints "pass PPPP sum SSSS"
; with a Fletcher checksum of the new words: a word that did not reach the destination changes
; every later sum. After 100 passes it exits through the debug-exit port with 0x21 (status 0x43).
; Build: nasm -f bin -o dirtier.bin dirtier.asm
bits 16
org 0x7c00
start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    cld
    call uart_init16
    mov word [pass], 0
.pass:
    inc word [pass]
    xor bp, bp                  ; Fletcher sums of the pass's words: BP = sum, DX = sum of sums
    xor dx, dx
    mov bx, 0x1000
    mov es, bx
    xor di, di
    mov cx, 0x8000
.word:
    mov ax, [es:di]             ; word = rol(word, 3) xor offset, plus the pass number
    rol ax, 3
    xor ax, di
    add ax, [pass]
    stosw
    add bp, ax
    add dx, bp
    loop .word
    mov [sum], dx
    mov si, msg_pass
    call puts16
    mov ax, [pass]
    call put_hex4
    mov si, msg_sum
    call puts16
    mov ax, [sum]
    call put_hex4
    mov al, 10
    call putc16
    cmp word [pass], 100
    jb .pass
    mov al, 0x21
    out 0xf4, al
.halt:
    hlt
    jmp .halt

put_hex4:                       ; AX as four hex digits
    mov cx, 4
.digit:
    rol ax, 4
    push ax
    and al, 0x0f
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 'a' - '9' - 1
.out:
    call putc16
    pop ax
    loop .digit
    ret

%include "../../guests/uart16.inc"

msg_pass db "pass ", 0
msg_sum  db " sum ", 0
pass     dw 0
sum      dw 0
