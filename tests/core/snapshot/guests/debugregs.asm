; Snapshot test guest (real mode, flat, loaded and entered at 0000:7C00) for the debug registers:
; loads DR0-DR3 and DR7, prints "set", then spins until the test writes 1 to `go` (after a
; snapshot and a restore, possibly on the other backend). It then reads each register back with
; MOV from DRn and prints "dr0=XXXXXXXX dr1=... dr7=XXXXXXXX", and exits through the debug-exit
; port with 0 (status 1). A restore that loses a debug register prints another value.
; Build: nasm -f bin -o debugregs.bin debugregs.asm
bits 16
org 0x7c00
start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    mov eax, 0x12345678
    mov dr0, eax
    mov eax, 0x9abcdef0
    mov dr1, eax
    mov eax, 0x00c0ffee
    mov dr2, eax
    mov eax, 0xfeedf00d
    mov dr3, eax
    mov eax, 0x00000401        ; L0 set, reserved bit 10
    mov dr7, eax
    mov si, set_msg
    call puts
.wait:
    cmp byte [go], 0
    je .wait
    mov si, dr0_msg
    call puts
    mov eax, dr0
    call put_hex8
    mov si, dr1_msg
    call puts
    mov eax, dr1
    call put_hex8
    mov si, dr2_msg
    call puts
    mov eax, dr2
    call put_hex8
    mov si, dr3_msg
    call puts
    mov eax, dr3
    call put_hex8
    mov si, dr7_msg
    call puts
    mov eax, dr7
    call put_hex8
    mov al, 10
    call putc
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

put_hex8:                       ; EAX as 8 hex digits
    mov cx, 8
.next:
    rol eax, 4
    push eax
    and al, 15
    add al, '0'
    cmp al, '9'
    jbe .digit
    add al, 'a' - '9' - 1
.digit:
    call putc
    pop eax
    loop .next
    ret

set_msg: db "set", 10, 0
dr0_msg: db "dr0=", 0
dr1_msg: db " dr1=", 0
dr2_msg: db " dr2=", 0
dr3_msg: db " dr3=", 0
dr7_msg: db " dr7=", 0
go: db 0
