; A polling virtio-mmio driver in 32-bit protected mode (no interrupts, so it also runs where KVM
; cannot deliver them): finds the virtio-blk device at 0xD0000000, negotiates VERSION_1, sets up
; an 8-entry queue, reads sector 0 and prints its first line, writes "WRITTEN-BY-GUEST" to
; sector 1, then submits a descriptor loop and checks the device answers DEVICE_NEEDS_RESET.
; Prints VIRTIO-GUEST-OK and resets the VM (status 0) on success; debug-exit 1 (status 3) else.
; Build: nasm -f bin -o virtio_blk_guest.bin virtio_blk_guest.asm
bits 16
org 0x7c00
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    lgdt [gdt_desc]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    jmp 0x08:pm

bits 32
VIRTIO equ 0xd0000000
DESC equ 0x10000
AVAIL equ 0x11000
USED equ 0x12000
HDR equ 0x13000
DATA equ 0x14000
STATUSB equ 0x15000
pm:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7c00
    mov edi, VIRTIO
    cmp dword [edi + 0x000], 0x74726976   ; MagicValue
    jne fail
    cmp dword [edi + 0x004], 2            ; Version
    jne fail
    cmp dword [edi + 0x008], 2            ; DeviceID: block
    jne fail
    mov dword [edi + 0x070], 0            ; reset
    mov dword [edi + 0x070], 3            ; ACKNOWLEDGE | DRIVER
    mov dword [edi + 0x024], 1            ; DriverFeaturesSel = 1
    mov dword [edi + 0x020], 1            ; VERSION_1
    mov dword [edi + 0x024], 0
    mov dword [edi + 0x020], 0
    mov dword [edi + 0x070], 11           ; | FEATURES_OK
    test dword [edi + 0x070], 8
    jz fail
    mov dword [edi + 0x030], 0            ; QueueSel
    cmp dword [edi + 0x034], 8            ; QueueNumMax >= 8
    jb fail
    mov dword [edi + 0x038], 8            ; QueueNum
    mov dword [edi + 0x080], DESC
    mov dword [edi + 0x084], 0
    mov dword [edi + 0x090], AVAIL
    mov dword [edi + 0x094], 0
    mov dword [edi + 0x0a0], USED
    mov dword [edi + 0x0a4], 0
    mov dword [edi + 0x044], 1            ; QueueReady
    mov dword [edi + 0x070], 15           ; | DRIVER_OK
    mov esi, label_cap                    ; capacity (config space, low word)
    call print_str
    mov eax, [edi + 0x100]
    call print_hex32
    mov al, 10
    call print_char

    ; Request 1: IN sector 0 -> DATA.
    mov dword [HDR], 0
    mov dword [HDR + 8], 0
    call submit
    mov esi, label_s0
    call print_str
    mov esi, DATA
.line:
    lodsb
    cmp al, 10
    je .eol
    call print_char
    jmp .line
.eol:
    mov al, 10
    call print_char

    ; Request 2: OUT sector 1 from DATA.
    mov edi, DATA
    mov esi, written
    mov ecx, 17
    rep movsb
    mov edi, VIRTIO
    mov dword [HDR], 1
    mov dword [HDR + 8], 1
    call submit
    mov esi, label_w
    call print_str

    ; A descriptor that is its own next: the device must ask for a reset.
    mov dword [DESC + 0], HDR
    mov dword [DESC + 4], 0
    mov dword [DESC + 8], 16
    mov dword [DESC + 12], 0x00000001     ; NEXT, next = 0
    mov word [AVAIL + 4 + 2 * 2], 0
    mov word [AVAIL + 2], 3
    mov dword [edi + 0x050], 0
    test dword [edi + 0x070], 0x40        ; DEVICE_NEEDS_RESET
    jz fail
    cmp word [USED + 2], 2                ; no used entry for it
    jne fail
    mov esi, label_nr
    call print_str
    mov esi, label_ok
    call print_str
    mov al, 0xfe                          ; keyboard-controller reset: status 0
    out 0x64, al
    hlt

; Submits the 3-descriptor request HDR / DATA (writable for IN) / STATUSB as the next chain,
; notifies and checks the used ring grew and the status is OK.
submit:
    movzx ebx, word [AVAIL + 2]           ; chain number = avail idx
    mov dword [DESC + 0], HDR
    mov dword [DESC + 4], 0
    mov dword [DESC + 8], 16
    mov dword [DESC + 12], 0x00010001     ; NEXT, next 1
    mov dword [DESC + 16], DATA
    mov dword [DESC + 20], 0
    mov dword [DESC + 24], 512
    mov eax, 0x00020001                   ; NEXT, next 2
    cmp dword [HDR], 0
    jne .out
    or eax, 2                             ; WRITE for an IN
.out:
    mov dword [DESC + 28], eax
    mov dword [DESC + 32], STATUSB
    mov dword [DESC + 36], 0
    mov dword [DESC + 40], 1
    mov dword [DESC + 44], 2              ; WRITE
    mov byte [STATUSB], 0xff
    mov word [AVAIL + 4 + 2 * ebx], 0
    inc ebx
    mov word [AVAIL + 2], bx
    mov dword [edi + 0x050], 0            ; QueueNotify
    movzx eax, word [USED + 2]
    cmp eax, ebx
    jne fail
    cmp byte [STATUSB], 0
    jne fail
    mov eax, [edi + 0x060]                ; InterruptStatus, then ACK it
    mov [edi + 0x064], eax
    ret

fail:
    mov esi, label_fail
    call print_str
    mov al, 1
    out 0xf4, al
    hlt

print_char:
    push edx
    push eax
    mov dx, 0x3fd
.wait:
    in al, dx
    test al, 0x20
    jz .wait
    pop eax
    mov dx, 0x3f8
    out dx, al
    pop edx
    ret

print_str:
    lodsb
    test al, al
    jz .done
    call print_char
    jmp print_str
.done:
    ret

print_hex32:
    push ecx
    mov ecx, 8
.digit:
    rol eax, 4
    push eax
    and al, 0xf
    add al, '0'
    cmp al, '9'
    jbe .p
    add al, 7
.p:
    call print_char
    pop eax
    loop .digit
    pop ecx
    ret

align 8
gdt:
    dq 0
    dq 0x00cf9a000000ffff                 ; 0x08: flat 32-bit code
    dq 0x00cf92000000ffff                 ; 0x10: flat data
gdt_desc:
    dw gdt_desc - gdt - 1
    dd gdt

label_cap: db "capacity 0x", 0
label_s0: db "sector 0: ", 0
label_w: db "sector 1 written", 10, 0
label_nr: db "loop: DEVICE_NEEDS_RESET", 10, 0
label_ok: db "VIRTIO-GUEST-OK", 10, 0
label_fail: db "VIRTIO-GUEST-FAIL", 10, 0
written: db "WRITTEN-BY-GUEST", 10
