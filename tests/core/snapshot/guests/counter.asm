; Snapshot test guest (real mode, flat, loaded and entered at 0000:7C00): counts from 0 to 199
; in a RAM variable, printing "tick NNN sum XXXX" through the UART data port for each (a busy
; loop in between, so a run takes long enough to be paused mid-way), then exits through the
; debug-exit port with 0 (status 1). State lives in RAM (count), registers (the running sum in
; BP) and the stack, so a restore that drops any of them prints something else.
; Build: nasm -f bin -o counter.bin counter.asm
bits 16
org 0x7c00
start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    xor bp, bp                  ; running sum of the counts (register state)
    mov word [count], 0
.loop:
    mov ax, [count]
    add bp, ax
    push bp                     ; stack state across the print
    mov si, msg
    call puts
    mov ax, [count]
    call put_dec3
    mov si, sum_msg
    call puts
    mov ax, bp
    call put_hex4
    mov al, 10
    call putc
    pop bp
    mov cx, 0x4000              ; busy loop between lines
.spin:
    loop .spin
    inc word [count]
    cmp word [count], 200
    jb .loop
    mov al, 0
    out 0xf4, al
.halt:
    hlt
    jmp .halt

putc:                           ; AL -> COM1 data port
    mov dx, 0x3f8
    out dx, al
    ret

puts:                           ; DS:SI, NUL-terminated
    lodsb
    test al, al
    jz .done
    call putc
    jmp puts
.done:
    ret

put_dec3:                       ; AX (0..999) as three decimal digits
    mov bl, 100
    div bl                      ; AL = hundreds, AH = rest
    push ax
    add al, '0'
    call putc
    pop ax
    mov al, ah
    xor ah, ah
    mov bl, 10
    div bl
    push ax
    add al, '0'
    call putc
    pop ax
    mov al, ah
    add al, '0'
    jmp putc

put_hex4:                       ; AX as four hex digits
    mov cx, 4
.next:
    rol ax, 4
    push ax
    and al, 0xf
    add al, '0'
    cmp al, '9'
    jbe .digit
    add al, 'a' - '9' - 1
.digit:
    call putc
    pop ax
    loop .next
    ret

msg: db "tick ", 0
sum_msg: db " sum ", 0
count: dw 0
