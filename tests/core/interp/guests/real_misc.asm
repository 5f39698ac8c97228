; Real-mode odds and ends: INT n through the IVT and IRET, #DE delivered through IVT vector 0,
; far CALL/RETF, PUSHA/POPA, ENTER/LEAVE, REP MOVSB, REPE CMPSB, XLAT, DAA, AAM and LOOP.
; Prints one letter per check that passes; the test expects all of them.
bits 16
org 0x7c00
start:
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    mov dx, 0x3f8
    ; IVT: INT 0x21 -> int21, vector 0 (#DE) -> de_handler.
    mov word [0x21 * 4], int21
    mov word [0x21 * 4 + 2], 0
    mov word [0], de_handler
    mov word [2], 0
    mov al, 'A'
    int 0x21                    ; prints AL
    ; #DE: the handler skips the 2-byte DIV and sets BX = 0x4444.
    xor bx, bx
    xor cx, cx
    mov ax, 1
    div cl
    cmp bx, 0x4444
    jne fail
    mov al, 'B'
    int 0x21
    ; Far call and return.
    call 0:far_fn
    cmp si, 0x5151
    jne fail
    mov al, 'C'
    int 0x21
    ; PUSHA/POPA keep registers, ENTER/LEAVE keep SP/BP.
    mov ax, 0x1111
    mov bp, 0x2222
    pusha
    xor ax, ax
    xor bp, bp
    popa
    cmp ax, 0x1111
    jne fail
    mov di, sp
    enter 8, 0
    sub sp, 4
    leave
    cmp sp, di
    jne fail
    cmp bp, 0x2222
    jne fail
    mov al, 'D'
    int 0x21
    ; REP MOVSB then REPE CMPSB over the copy.
    mov si, text
    mov di, 0x600
    mov cx, 5
    cld
    rep movsb
    mov si, text
    mov di, 0x600
    mov cx, 5
    repe cmpsb
    jne fail
    cmp cx, 0
    jne fail
    mov al, 'E'
    int 0x21
    ; XLAT, DAA, AAM, LOOP.
    mov bx, table
    mov al, 2
    xlatb
    cmp al, 'z'
    jne fail
    mov al, 0x19
    add al, 0x28
    daa
    cmp al, 0x47
    jne fail
    mov al, 47
    aam
    cmp ax, 0x0407
    jne fail
    xor ax, ax
    mov cx, 10
.l: add ax, cx
    loop .l
    cmp ax, 55
    jne fail
    mov al, 'F'
    int 0x21
    mov al, 10
    int 0x21
    mov al, 0
    out 0xf4, al
    hlt

fail:
    mov al, '!'
    out dx, al
    mov al, 1
    out 0xf4, al
    hlt

int21:
    out dx, al
    iret

de_handler:
    push bp
    mov bp, sp
    add word [bp + 2], 2        ; skip "div cl" (F6 F1)
    pop bp
    mov bx, 0x4444
    iret

far_fn:
    mov si, 0x5151
    retf

text: db "hello"
table: db "xyz"
