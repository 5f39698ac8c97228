; API test guest: prints "tick 00" .. "tick 29" through the UART, one line every ~50 ms of VM
; time (five wraps of PIT channel 0 in mode 2 with a 10 ms period, polled with latch commands,
; interrupts off), then exits through port 0xF4 with 0x10 (process status 33). The delay comes
; from the VM clock, so the pace is the same on the interpreter and on KVM, and output stops
; while the VM is paused. Loaded at 0x7C00 in real mode (a flat image).
; Build: nasm -f bin -o counter.bin counter.asm (-DLINES=N for another count, at most 100:
; tests/migration/guests/long_counter.bin is -DLINES=80)
bits 16
org 0x7c00

%ifndef LINES
%define LINES 30
%endif
WRAPS equ 5

start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    mov al, 0x34            ; channel 0, lobyte/hibyte, mode 2
    out 0x43, al
    mov al, 0x9c            ; 11932 = 0x2E9C ticks of 1.193182 MHz = 10 ms
    out 0x40, al
    mov al, 0x2e
    out 0x40, al
    xor bx, bx              ; line number
.line:
    mov si, msg
    call puts
    mov ax, bx
    mov cl, 10
    div cl                  ; al = tens, ah = units
    add ax, 0x3030
    mov dx, 0x3f8
    out dx, al
    mov al, ah
    out dx, al
    mov al, 10
    out dx, al
    inc bx
    cmp bx, LINES
    je .exit
    mov cx, WRAPS
    call delay
    jmp .line
.exit:
    mov al, 0x10
    out 0xf4, al
    hlt

; Waits for cx reloads of PIT channel 0 (the count going up from one read to the next).
delay:
    call readpit
    mov di, ax
.poll:
    call readpit
    cmp ax, di
    mov di, ax              ; mov keeps the flags of the cmp
    jbe .poll
    loop .poll
    ret

; ax = channel 0's current count.
readpit:
    mov al, 0x00            ; latch channel 0
    out 0x43, al
    in al, 0x40
    mov ah, al
    in al, 0x40
    xchg al, ah
    ret

puts:
    mov dx, 0x3f8
.next:
    lodsb
    test al, al
    jz .done
    out dx, al
    jmp .next
.done:
    ret

msg: db "tick ", 0
