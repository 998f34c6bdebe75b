/* tiles_embed.S: the stdlib tile bitcode, compiled by clang for nvptx64 at build time, embedded
 * into mlkc (see codegen.c: mlk_tiles_bc_*). */
        .section .rodata
        .balign 16
        .globl mlk_tiles_bc_sm90a, mlk_tiles_bc_sm90a_end
mlk_tiles_bc_sm90a:
        .incbin MLK_TILES_BC_SM90A
mlk_tiles_bc_sm90a_end:
        .balign 16
        .globl mlk_tiles_bc_sm80, mlk_tiles_bc_sm80_end
mlk_tiles_bc_sm80:
        .incbin MLK_TILES_BC_SM80
mlk_tiles_bc_sm80_end:
        .section .note.GNU-stack,"",@progbits
