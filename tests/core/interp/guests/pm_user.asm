; 32-bit protected mode privilege changes: IRET into ring 3, a #GP (CLI at CPL3 with IOPL 0)
; delivered through a 32-bit interrupt gate with the stack switched to the TSS's SS0:ESP0 and an
; error code, IRET back to ring 3, then INT 0x80 through a DPL3 gate to finish.
bits 16
org 0x7c00
ESP0 equ 0x9000
    cli
    xor ax, ax
    mov ds, ax
    lgdt [gdt_desc]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    jmp 0x08:pm
bits 32
pm:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7c00
    ; TSS: ESP0 at +4, SS0 at +8.
    mov dword [tss + 4], ESP0
    mov dword [tss + 8], 0x10
    mov eax, tss
    mov [gdt + 0x28 + 2], ax
    shr eax, 16
    mov [gdt + 0x28 + 4], al
    mov ax, 0x28
    ltr ax
    ; IDT gates: 13 -> gp (DPL0), 0x80 -> sys (DPL3).
    mov eax, gp
    mov edi, idt + 13 * 8
    mov dl, 0x8e
    call gate
    mov eax, sys
    mov edi, idt + 0x80 * 8
    mov dl, 0xee
    call gate
    lidt [idt_desc]
    push 0x23                  ; user SS
    push 0x8000                ; user ESP
    push 0x2                   ; EFLAGS (IOPL 0)
    push 0x1b                  ; user CS
    push user
    iret

gate:                          ; EAX = handler, EDI = gate, DL = type
    mov [edi], ax
    mov word [edi + 2], 0x08
    mov byte [edi + 4], 0
    mov [edi + 5], dl
    shr eax, 16
    mov [edi + 6], ax
    ret

gp:
    cmp dword [esp], 0         ; error code
    jne fail
    cmp dword [esp + 8], 0x1b  ; CS of the faulting code
    jne fail
    cmp esp, ESP0 - 24         ; SS, ESP, EFLAGS, CS, EIP, error code
    jne fail
    mov ax, ss
    cmp ax, 0x10
    jne fail
    mov dx, 0x3f8
    mov al, 'G'
    out dx, al
    add dword [esp + 4], 1     ; skip CLI
    add esp, 4
    iret

sys:
    cmp dword [esp + 4], 0x1b
    jne fail
    mov dx, 0x3f8
    mov al, 'S'
    out dx, al
    mov al, 10
    out dx, al
    mov al, 0
    out 0xf4, al
    hlt

fail:
    mov dx, 0x3f8
    mov al, '!'
    out dx, al
    mov al, 1
    out 0xf4, al
    hlt

user:
    mov ax, cs
    cmp ax, 0x1b
    jne user_fail
    cli                        ; #GP
    int 0x80
user_fail:
    jmp user_fail

align 8
gdt:
    dq 0
    dq 0x00cf9a000000ffff      ; 0x08 ring-0 code
    dq 0x00cf92000000ffff      ; 0x10 ring-0 data
    dq 0x00cffa000000ffff      ; 0x18 ring-3 code
    dq 0x00cff2000000ffff      ; 0x20 ring-3 data
    dq 0x0000890000000067      ; 0x28 32-bit TSS (base patched at run time)
gdt_end:
gdt_desc:
    dw gdt_end - gdt - 1
    dd gdt
idt_desc:
    dw 256 * 8 - 1
    dd idt
align 16
tss: times 104 db 0
align 8
idt: times 256 * 8 db 0
