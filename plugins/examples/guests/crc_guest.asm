; Uses the crc32_dma example plugin: asks the device for the CRC-32 of a message in guest RAM
; (DMA), prints the message and the result, then checks that a range outside guest RAM is
; refused (status 2). Resets (status 0) on success, debug-exit 1 (status 3) otherwise.
; Build: nasm -f bin -o crc_guest.bin crc_guest.asm
bits 16
org 0x7c00
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    mov si, label_data
    call print_str
    mov si, message
    call print_str
    mov al, 10
    call print_char

    mov eax, message        ; physical address (DS = 0)
    mov ebx, message_end - message
    call crc_dma
    cmp al, 1
    jne fail_vm
    mov si, label_crc
    call print_str
    mov dx, 0x5bc
    in eax, dx
    call print_hex32
    mov al, 10
    call print_char

    mov eax, 0xfffffff0     ; not RAM: the device must refuse
    mov ebx, 64
    call crc_dma
    cmp al, 2
    jne fail_vm
    mov si, label_refused
    call print_str
    jmp reset_vm

crc_dma:                    ; EAX = address, EBX = length; returns status in AL
    mov dx, 0x5b0
    out dx, eax
    mov eax, ebx
    mov dx, 0x5b4
    out dx, eax
    mov eax, 1
    mov dx, 0x5b8
    out dx, eax
    mov dx, 0x5c0
    in eax, dx
    ret

%include "serial.inc"
label_data: db "data: ", 0
label_crc: db "crc32: ", 0
label_refused: db "dma outside RAM refused", 10, 0
message: db "denovisor plugins DMA into guest memory"
message_end: db 0
