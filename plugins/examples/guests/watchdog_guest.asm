; Uses the watchdog example plugin: arms a 500 ms watchdog, kicks it every 20 ms of its clock
; five times, then stops kicking and waits. The watchdog must end the VM; if 3 s of its clock
; pass first, the guest fails with debug-exit 1 (status 3).
; Build: nasm -f bin -o watchdog_guest.bin watchdog_guest.asm
bits 16
org 0x7c00
WDT equ 0x590
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    mov dx, WDT + 8
    in eax, dx
    mov [start], eax
    mov eax, 500            ; arm: 500 ms (a wide margin over the 20 ms kicks on a loaded host)
    mov dx, WDT
    out dx, eax
    mov cx, 5
.kick:
    mov ebx, 20
    call sleep_ms
    mov dx, WDT + 4
    out dx, eax
    mov si, label_kick
    call print_str
    loop .kick
    mov dx, WDT + 12
    in eax, dx
    cmp eax, 1              ; still armed after the kicks
    jne fail_vm
    mov si, label_wait
    call print_str
    mov ebx, 3000
    call sleep_ms           ; the watchdog ends the VM before this returns
    jmp fail_vm

sleep_ms:                   ; EBX = ms of the watchdog's clock; polls the clock register
    push cx
    mov dx, WDT + 8
    in eax, dx
    add ebx, eax
.poll:
    in eax, dx
    cmp eax, ebx
    jb .poll
    pop cx
    ret

%include "serial.inc"
start: dd 0
label_kick: db "kick", 10, 0
label_wait: db "no more kicks", 10, 0
