; Real mode -> 32-bit protected mode (flat and non-flat segments) -> long mode (4-level paging,
; 2 MiB pages) -> compatibility mode -> back to 64-bit mode. Prints a tag from each mode.
bits 16
org 0x7c00
start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    mov si, msg_rm
    call print16
    lgdt [gdt_desc]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    jmp 0x08:pm32

print16:
    mov dx, 0x3f8
.l: lodsb
    test al, al
    jz .d
    out dx, al
    jmp .l
.d: ret

bits 32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7c00
    mov esi, msg_pm
    call print32
    ; A non-flat data segment (base 0x10000) must add its base.
    mov ax, 0x18
    mov fs, ax
    mov dword [fs:0x100], 0x12345678
    cmp dword [0x10100], 0x12345678
    jne fail
    ; Page tables: PML4 0x20000 -> PDPT 0x21000 -> PD 0x22000, 512 x 2 MiB identity.
    mov edi, 0x20000
    xor eax, eax
    mov ecx, 3 * 1024
    rep stosd
    mov dword [0x20000], 0x21003
    mov dword [0x21000], 0x22003
    mov edi, 0x22000
    mov eax, 0x83
    mov ecx, 512
.pd:
    mov [edi], eax
    add eax, 0x200000
    add edi, 8
    loop .pd
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, 0x20000
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    jmp 0x28:lm64

print32:
    mov dx, 0x3f8
.l: lodsb
    test al, al
    jz .d
    out dx, al
    jmp .l
.d: ret

fail:
    mov dx, 0x3f8
    mov al, '!'
    out dx, al
    mov al, 1
    out 0xf4, al
    hlt

bits 64
lm64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rsp, 0x7c00
    mov ecx, 0xc0000080
    rdmsr
    test eax, 0x400          ; EFER.LMA must be set now
    jz fail64
    lea rsi, [rel msg_lm]
    call print64
    ; 64-bit arithmetic sanity: a value above 4 GiB survives a round trip through memory.
    mov rax, 0x123456789abcdef0
    push rax
    pop rbx
    cmp rbx, rax
    jne fail64
    ; Into compatibility mode through a far pointer (m16:32), and back with a far jump.
    jmp far [rel compat_ptr]
back64:
    mov ax, 0x10
    mov ss, ax
    lea rsi, [rel msg_ok]
    call print64
    mov al, 0
    out 0xf4, al
    hlt

print64:
    mov dx, 0x3f8
.l: lodsb
    test al, al
    jz .d
    out dx, al
    jmp .l
.d: ret

fail64:
    mov dx, 0x3f8
    mov al, '?'
    out dx, al
    mov al, 1
    out 0xf4, al
    hlt

bits 32
compat:
    mov esi, msg_cm
    call print32
    jmp 0x28:back64

align 8
compat_ptr: dq compat           ; m16:64 (nasm encodes REX.W)
            dw 0x08

align 8
gdt:
    dq 0
    dq 0x00cf9a000000ffff    ; 0x08 flat 32-bit code
    dq 0x00cf92000000ffff    ; 0x10 flat data
    dq 0x00cf92010000ffff    ; 0x18 data, base 0x10000
    dq 0x00009a000000ffff    ; 0x20 16-bit code
    dq 0x00af9a000000ffff    ; 0x28 64-bit code
gdt_end:
gdt_desc:
    dw gdt_end - gdt - 1
    dd gdt

msg_rm: db "RM ", 0
msg_pm: db "PM ", 0
msg_lm: db "LM ", 0
msg_cm: db "CM ", 0
msg_ok: db "OK", 10, 0
