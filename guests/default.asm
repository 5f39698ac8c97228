; The guest denovisor boots when no --kernel is given: a flat real-mode image loaded at
; 0000:7C00. It says hello over COM1, names the backend it runs on (read from the VMM's info
; port), switches to 32-bit protected mode to show the mode switch works, and resets the
; machine through the i8042 so the VM ends with status 0. No interrupts or exceptions are used.
; Build: `deno run -A guests/build.ts` assembles this into default.bin and default.ts.

bits 16
org 0x7C00

COM1        equ 0x3F8           ; first PC serial port (16550)
UART_LSR    equ COM1 + 5        ; line status register
LSR_THRE    equ 0x20            ; transmit holding register empty
INFO_PORT   equ 0x5F0           ; denovisor info device: reads return the backend name, one
                                ; byte per IN, then 0; any write rewinds. Unclaimed: reads 0xFF.
NAME_MAX    equ 16              ; the info device's names are shorter than this
I8042_CMD   equ 0x64            ; i8042 command port
I8042_RESET equ 0xFE            ; pulse the CPU reset line: the VM ends with status 0
CODE32      equ 0x08            ; GDT selectors below
DATA32      equ 0x10

start:
    cli
    cld
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00

    ; COM1: interrupts off, divisor 1 (115200 baud), 8N1.
    mov dx, COM1 + 1
    out dx, al                  ; AL = 0
    mov dx, COM1 + 3
    mov al, 0x80
    out dx, al
    mov dx, COM1
    mov al, 1
    out dx, al
    mov dx, COM1 + 1
    xor al, al
    out dx, al
    mov dx, COM1 + 3
    mov al, 0x03
    out dx, al

    mov si, banner
    call puts16

    ; backend: <name from the info port>, or "unknown" when nothing answers there.
    mov dx, INFO_PORT
    out dx, al                  ; rewind
    in al, dx
    cmp al, 0xFF
    je .unknown
    mov cx, NAME_MAX
.name:
    test al, al
    jz .named
    call putc16
    mov dx, INFO_PORT
    in al, dx
    loop .name
    jmp .named
.unknown:
    mov si, unknown
    call puts16
.named:
    mov al, 10
    call putc16

    ; 32-bit protected mode, flat segments, paging off.
    lgdt [gdt_ptr]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp CODE32:pm_entry

; putc16: writes AL to COM1 once the transmitter is empty. Clobbers DX.
putc16:
    push ax
    mov dx, UART_LSR
.wait:
    in al, dx
    test al, LSR_THRE
    jz .wait
    pop ax
    mov dx, COM1
    out dx, al
    ret

; puts16: writes the zero-terminated string at DS:SI.
puts16:
    lodsb
    test al, al
    jz .done
    call putc16
    jmp puts16
.done:
    ret

bits 32
pm_entry:
    mov ax, DATA32
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7C00
    mov esi, pm_ok
.next:
    lodsb
    test al, al
    jz .reset
    mov bl, al
    mov dx, UART_LSR
.wait:
    in al, dx
    test al, LSR_THRE
    jz .wait
    mov al, bl
    mov dx, COM1
    out dx, al
    jmp .next
.reset:
    mov al, I8042_RESET
    out I8042_CMD, al
.halt:
    hlt
    jmp .halt

align 8
gdt:
    dq 0                        ; null descriptor
    dq 0x00CF9A000000FFFF       ; 0x08: code, base 0, limit 4 GiB, 32-bit
    dq 0x00CF92000000FFFF       ; 0x10: data, base 0, limit 4 GiB
gdt_ptr:
    dw gdt_ptr - gdt - 1
    dd gdt

banner:  db "denovisor: hello from the default guest", 10, "backend: ", 0
unknown: db "unknown", 0
pm_ok:   db "protected mode: ok", 10, 0

%if ($ - $$) > 510
%error "default.bin must fit in 510 bytes (a boot sector) so QEMU can run it for reference"
%endif
