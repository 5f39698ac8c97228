; Paging faults handled by the guest's own IDT: a not-present read, a write to a read-only
; 4 KiB page (CR0.WP) and an instruction fetch from an NX page. The handler checks CR2 and the
; error code, repairs the mapping and returns with IRETQ so the instruction restarts.
%include "lm_setup.inc"

PD1 equ 0x23000
PT  equ 0x24000

main64:
    mov rdi, 14
    lea rsi, [rel pf_handler]
    mov dl, 0x8e
    xor ecx, ecx
    call set_gate
    mov qword [0x200000], 0x5a5a1234

    ; 1: read from 1 GiB (PDPT entry 1 not present) -> err 0, then mapped to phys 0x200000.
    mov qword [expect_cr2], 0x40000000
    mov qword [expect_err], 0
    lea rax, [rel fix1]
    mov [fixup], rax
    mov rax, [0x40000000]
    cmp rax, 0x5a5a1234
    jne fail

    ; 2: write to a read-only 4 KiB page at 0x600000 -> err 3 (present | write).
    mov rdi, PT
    xor eax, eax
    mov ecx, 1024
    rep stosd
    mov qword [PT], 0x300000 | 1        ; present, read-only, supervisor
    mov qword [PD0 + 3 * 8], PT | 7      ; PD entry for 0x600000
    invlpg [0x600000]
    mov qword [expect_cr2], 0x600010
    mov qword [expect_err], 3
    lea rax, [rel fix2]
    mov [fixup], rax
    mov dword [0x600010], 0xabcd
    cmp dword [0x300010], 0xabcd
    jne fail

    ; 3: fetch from an NX 2 MiB page at 0x800000 -> err 0x11 (present | fetch).
    mov byte [0x800000], 0xc3            ; ret
    bts qword [PD0 + 4 * 8], 63          ; NX
    invlpg [0x800000]
    mov qword [expect_cr2], 0x800000
    mov qword [expect_err], 0x11
    lea rax, [rel fix3]
    mov [fixup], rax
    mov rax, 0x800000
    call rax

    cmp qword [pf_count], 3
    jne fail
    lea rsi, [rel ok_msg]
    call print64
    mov al, 0
    jmp exit64

pf_handler:
    push rax
    push rbx
    push rsi
    mov rax, cr2
    cmp rax, [expect_cr2]
    jne .bad
    mov rbx, [rsp + 24]                  ; error code
    cmp rbx, [expect_err]
    jne .bad
    inc qword [pf_count]
    lea rsi, [rel pf_msg]
    call print64
    call [fixup]
    pop rsi
    pop rbx
    pop rax
    add rsp, 8                           ; drop the error code
    iretq
.bad:
    lea rsi, [rel bad_msg]
    call print64
    mov rax, cr2
    call hex64
    mov rax, [rsp + 24]
    call hex64
    mov al, 2
    jmp exit64

fix1:
    mov qword [PDPT + 8], PD1 | 7
    mov qword [PD1], 0x200000 | 0x87
    invlpg [0x40000000]
    ret
fix2:
    or qword [PT], 2
    invlpg [0x600000]
    ret
fix3:
    btr qword [PD0 + 4 * 8], 63
    invlpg [0x800000]
    ret

expect_cr2: dq 0
expect_err: dq 0
fixup: dq 0
pf_count: dq 0
pf_msg: db "PF ", 0
bad_msg: db "bad #PF cr2/err: ", 0
ok_msg: db "OK", 10, 0
