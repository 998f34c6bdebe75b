# tests/driver: the mlkc command line. Each case runs mlkc with some arguments, requires an exit
# status, and matches what it prints.

# mlk_driver_test(NAME STATUS REGEX ARGS...)
function(mlk_driver_test name status regex)
  # a ';' would make the pass regex a list of alternatives, any one of which passes the test
  string(FIND "${regex}" ";" _semi)
  if(NOT _semi EQUAL -1)
    message(FATAL_ERROR "driver test '${name}': its regex has a ';', which splits it into several (write '.')")
  endif()
  add_test(NAME driver_${name}
    COMMAND sh -c "cd \"${CMAKE_CURRENT_BINARY_DIR}\" && \"$@\" 2>&1; rc=$?; [ $rc -eq ${status} ] || echo \"BAD EXIT STATUS $rc (expected ${status})\""
            -- $<TARGET_FILE:mlkc> ${ARGN})
  set_tests_properties(driver_${name} PROPERTIES PASS_REGULAR_EXPRESSION "${regex}"
                       FAIL_REGULAR_EXPRESSION "BAD EXIT STATUS|internal error|Sanitizer" LABELS driver)
endfunction()

set(MLP ${PROJECT_SOURCE_DIR}/examples/mlp/mlp.mlk)
mlk_driver_test(version 0 "^mlkc [0-9]+\\.[0-9]+\\.[0-9]+" --version)
mlk_driver_test(help 0 "usage: mlkc \\[options\\] FILE\\.mlk.*--emit=KIND" --help)
mlk_driver_test(no_input 1 "mlkc: error: no input file" )
mlk_driver_test(unknown_option 1 "mlkc: error: unknown option '--frobnicate'" --frobnicate ${MLP})
mlk_driver_test(unknown_emit 1 "mlkc: error: unknown --emit kind 'bytes'" --emit=bytes ${MLP})
mlk_driver_test(unknown_arch 1 "mlkc: error: unknown --arch 'sm_70'" --arch=sm_70 ${MLP})
mlk_driver_test(two_inputs 1 "mlkc: error: more than one input file" ${MLP} ${MLP})
mlk_driver_test(missing_file 1 "mlkc: error: cannot read 'no-such-file.mlk': No such file or directory" no-such-file.mlk)
mlk_driver_test(dash_o_missing 1 "mlkc: error: -o needs a path" ${MLP} -o)
mlk_driver_test(unwritable_output 1 "mlkc: error: cannot write 'no-such-dir/mlp.h'" ${MLP} -o no-such-dir/mlp)
mlk_driver_test(attn_split_zero 1 "mlkc: error: --attn-split needs a number of chunks in 1\\.\\.32, got '0'"
                --attn-split=0 ${MLP})
mlk_driver_test(attn_split_junk 1 "mlkc: error: --attn-split needs a number of chunks in 1\\.\\.32, got '4x'"
                --attn-split=4x ${MLP})
mlk_driver_test(help_attn_split 0 "--attn-split=N.*about 128 tasks per attention op" --help)
# --attn-split=N sets the chunks of attention without a tile(split = s) hint (1: not split).
mlk_driver_test(attn_split_graph 0 "\"kind\": \"attention\", [^\n]*\"tasks\": 14, [^\n]*\"split\": 7,"
                --attn-split=7 --emit=graph ${PROJECT_SOURCE_DIR}/tests/sim/llama_tiny.mlk)
mlk_driver_test(after_unknown 1 "mlkc: error: unknown --after pass 'parse'" --emit=graph --after=parse ${MLP})
mlk_driver_test(after_needs_graph 1 "mlkc: error: --after=elaborate needs --emit=graph" --emit=events --after=elaborate ${MLP})
# A wait on an explicit counter that nothing notifies would be met at once: a warning, which --check
# gives as the compile does.
mlk_driver_test(event_unnotified 0 "events_explicit.mlk:19:38: warning: nothing in megakernel 'f' notifies 'done\\[0\\]': this wait is met at once"
                --check ${PROJECT_SOURCE_DIR}/tests/codegen/events_explicit.mlk)
# wait(...) and notify(...) on a statement that computes nothing: a warning each; the output's copy
# takes its statement's wait (the --emit=graph --after=events dump shows it).
mlk_driver_test(event_no_op_wait 0 "event_no_op.mlk:21:11: warning: wait\\(...\\) applies to the operations of its statement, and this one computes nothing: it has no effect"
                --check ${CMAKE_CURRENT_LIST_DIR}/event_no_op.mlk)
mlk_driver_test(event_no_op_notify 0 "event_no_op.mlk:22:17: warning: notify\\(...\\) applies to the operations"
                --check ${CMAKE_CURRENT_LIST_DIR}/event_no_op.mlk)
mlk_driver_test(event_store_waits 0 "copy [^\n]* ->z [^\n]* <- x wait\\(e\\[0\\]\\) grid"
                --emit=graph --after=events ${CMAKE_CURRENT_LIST_DIR}/event_no_op.mlk)
mlk_driver_test(event_allreduce_copy 0 "copy [^\n]* h [^\n]* <- %[0-9]+ wait\\(e\\[0\\]\\) grid"
                --emit=graph --after=events ${CMAKE_CURRENT_LIST_DIR}/event_allreduce.mlk)
mlk_driver_test(unknown_model 1 "mlkc: error: .*has no model 'nope'" --model=nope ${MLP})
# The default output: NAME.h and NAME.c next to the working directory, and a clean exit.
mlk_driver_test(default_output 0 "^$" ${MLP})

# The llama example and the stdlib it imports check cleanly: no error, no warning.
mlk_driver_test(check_llama 0 "^$" --check ${PROJECT_SOURCE_DIR}/examples/llama/llama.mlk)
mlk_driver_test(ast_llama 0 "^\\(program .*llama.mlk.*\\(import std.nn" --emit=ast ${PROJECT_SOURCE_DIR}/examples/llama/llama.mlk)
mlk_driver_test(check_llama_sample 0 "^$" --check ${PROJECT_SOURCE_DIR}/examples/llama/llama_sample.mlk)
# ... and compile to a megakernel.
mlk_driver_test(lower_llama 0 "^$" ${PROJECT_SOURCE_DIR}/examples/llama/llama.mlk -o llama)

# -v: ptxas's resource report of the megakernel as the driver compiles it (relocatable: the
# functions', then the entry's), each function's spills under its name (needs the CUDA toolkit's
# ptxas).
if(MLK_PTXAS)
  mlk_driver_test(verbose_ptxas 0 "mlkc: ptxas sm_90a: matvec_stream_b1: [0-9]+ bytes stack frame, [0-9]+ bytes spill stores.*mlkc: ptxas sm_90a: .*Used [0-9]+ registers"
                  -v ${MLP} -o mlp_v)
endif()

# ('.' stands for the semicolons of the generated code in these regexes: mlk_driver_test refuses ';'.)
# --cubin: the sm_90a PTX compiled as the driver does (ptxas -c, then nvlink) and embedded in the
# generated C ($MLKC_PTXAS: here a stand-in toolkit whose nvlink writes 267 known bytes); only
# with generated C; a tool missing or failing is an error that says so and relays its messages.
set(FAKE_TOOLKIT ${CMAKE_CURRENT_LIST_DIR}/fake_toolkit)
mlk_driver_test(cubin_emit_ptx 1 "mlkc: error: --cubin embeds the cubin in the generated C: it goes with -o or --emit=source, not --emit=ptx"
                --cubin --emit=ptx ${MLP})
mlk_driver_test(cubin_embedded 0 "static _Alignas\\(16\\) const unsigned char cubin_sm90a\\[267\\] = {\n    0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,\n    16,.*,254,255,\n    70,65,75,69,32,67,85,66,73,78,10\n}..*ptx_sm80,\n.*    \\.cubin_sm90a = cubin_sm90a,\n    \\.cubin_sm90a_bytes = \\(int64_t\\)sizeof cubin_sm90a,\n}."
                --cubin --emit=source ${MLP})
mlk_driver_test(cubin_ptxas_fails 1 "mlkc: error: --cubin: ptxas failed \\(exit 255. [^)]*fake_toolkit/ptxas\\):\nmlkc: \\| ptxas fatal   : Unresolved extern function 'mlk_missing' in [^\n]*in.ptx\n$"
                --cubin ${MLP} -o mlp_cubin_fails)
mlk_driver_test(cubin_no_ptxas 1 "mlkc: error: --cubin needs the CUDA toolkit's ptxas: '/nonexistent/ptxas' was not found \\(set MLKC_PTXAS or CUDA_HOME, or put ptxas and nvlink on PATH\\)"
                --cubin ${MLP} -o mlp_cubin_missing)
mlk_driver_test(cubin_no_nvlink 1 "mlkc: error: --cubin needs the CUDA toolkit's nvlink: '[^']*/ptxas_only/nvlink' was not found"
                --cubin ${MLP} -o mlp_cubin_no_nvlink)
file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/ptxas_only)
file(COPY ${FAKE_TOOLKIT}/ptxas DESTINATION ${CMAKE_CURRENT_BINARY_DIR}/ptxas_only)
set_tests_properties(driver_cubin_embedded PROPERTIES ENVIRONMENT "MLKC_PTXAS=${FAKE_TOOLKIT}/ptxas")
set_tests_properties(driver_cubin_ptxas_fails PROPERTIES ENVIRONMENT "MLKC_PTXAS=${FAKE_TOOLKIT}/ptxas;FAKE_PTXAS_FAIL=1")
set_tests_properties(driver_cubin_no_ptxas PROPERTIES ENVIRONMENT "MLKC_PTXAS=/nonexistent/ptxas")
set_tests_properties(driver_cubin_no_nvlink PROPERTIES ENVIRONMENT "MLKC_PTXAS=${CMAKE_CURRENT_BINARY_DIR}/ptxas_only/ptxas")
# Without generated C files left behind by a failed --cubin compile.
add_test(NAME driver_cubin_fails_writes_nothing
  COMMAND sh -c "cd \"$1\" && rm -f mlp_cubin_nothing.h mlp_cubin_nothing.c && ! MLKC_PTXAS=/nonexistent/ptxas \"$2\" --cubin \"$3\" -o mlp_cubin_nothing 2>/dev/null && ! ls mlp_cubin_nothing.* 2>/dev/null && echo ok"
          -- ${CMAKE_CURRENT_BINARY_DIR} $<TARGET_FILE:mlkc> ${MLP})
set_tests_properties(driver_cubin_fails_writes_nothing PROPERTIES PASS_REGULAR_EXPRESSION "^ok\n$" LABELS driver)

# The default stdlib: in the build tree, the source tree's; beside a copy of mlkc laid out as
# installed (BINDIR/mlkc and the stdlib under DATADIR), that copy's, without $MLKC_STDLIB.
mlk_driver_test(help_stdlib_build_tree 0 "else\n *${PROJECT_SOURCE_DIR}/stdlib\\)" --help)
add_test(NAME driver_stdlib_beside_exe
  COMMAND sh -c "set -e; d=\"$1\"; rm -rf \"$d\"; mkdir -p \"$d/${CMAKE_INSTALL_BINDIR}\" \"$d/${MLK_INSTALL_STDLIBDIR}\"
                 cp \"$2\" \"$d/${CMAKE_INSTALL_BINDIR}/\"; cp \"$3\"/*.mlk \"$d/${MLK_INSTALL_STDLIBDIR}/\"
                 d=$(cd \"$d\" && pwd -P); unset MLKC_STDLIB
                 \"$d/${CMAKE_INSTALL_BINDIR}/mlkc\" --help | tr -d '\\n' | grep -q \"else *$d/${MLK_INSTALL_STDLIBDIR})\"
                 \"$d/${CMAKE_INSTALL_BINDIR}/mlkc\" --emit=ast \"$4\" | grep -q \"$d/${MLK_INSTALL_STDLIBDIR}/nn.mlk\"
                 echo ok"
          -- ${CMAKE_CURRENT_BINARY_DIR}/stdlib_beside_exe $<TARGET_FILE:mlkc> ${PROJECT_SOURCE_DIR}/stdlib
             ${PROJECT_SOURCE_DIR}/examples/llama/llama.mlk)
set_tests_properties(driver_stdlib_beside_exe PROPERTIES PASS_REGULAR_EXPRESSION "^ok\n$" LABELS driver)

# --config FILE: the dims of the Llama family bound to a config.json's keys (tests/driver/config).
set(LLAMA_FAMILY ${PROJECT_SOURCE_DIR}/stdlib/models/llama.mlk)
set(CFG ${CMAKE_CURRENT_LIST_DIR}/config)
mlk_driver_test(check_llama_family 0 "^$" --check ${LLAMA_FAMILY})
mlk_driver_test(config_tiny 0 "\"name\": \"embed\", [^\n]*\"shape\": \\[101, 72\\][^\n]*\n.*\"name\": \"wqkv\", [^\n]*\"shape\": \\[2, 120, 72\\].*\"eps\": 9\\.99999997e-07"
                --config ${CFG}/tiny.json --model=llama --emit=graph ${LLAMA_FAMILY})
mlk_driver_test(config_llama32 0 "\"name\": \"wqkv\", [^\n]*\"shape\": \\[16, 3072, 2048\\].*\"theta\": 500000, \"rope_factor\": 32, \"rope_low_freq\": 1, \"rope_high_freq\": 4, \"rope_original_max_pos\": 8192"
                --config=${CFG}/llama32.json --model=llama --emit=graph ${LLAMA_FAMILY})
# transformers 5 writes RoPE as one rope_parameters object: the same dims as the older layout.
mlk_driver_test(config_llama32_v5 0 "\"name\": \"wqkv\", [^\n]*\"shape\": \\[16, 3072, 2048\\].*\"theta\": 500000, \"rope_factor\": 32, \"rope_low_freq\": 1, \"rope_high_freq\": 4, \"rope_original_max_pos\": 8192"
                --config=${CFG}/llama32_v5.json --model=llama --emit=graph ${LLAMA_FAMILY})
# --batch-max N: the dynamic batch dim ranges up to N (mlk-run --batch prefills longer prompts).
mlk_driver_test(batch_max 0 "\"batch\": {\"dim\": \"B\", \"min\": 1, \"max\": 256}"
                --batch-max=256 --config ${CFG}/tiny.json --model=llama --emit=graph ${LLAMA_FAMILY})
mlk_driver_test(batch_max_none 1 "mlkc: error: --batch-max 4: the program has no dynamic dim"
                --batch-max=4 --emit=graph ${MLP})
mlk_driver_test(batch_max_bad 1 "mlkc: error: --batch-max needs a number of rows in 1..65536, got '0'"
                --batch-max=0 ${MLP})
mlk_driver_test(config_untied 0 "\"name\": \"head\", [^\n]*\"from\": \"lm_head.weight\""
                --config ${CFG}/tiny.json --model=llama_untied --emit=graph ${LLAMA_FAMILY})
mlk_driver_test(config_missing_key 1 "llama.mlk:18:21: error: config '[^']*missing.json' has no 'intermediate_size', which dim 'F' of config 'llama_cfg' takes its value from"
                --config ${CFG}/missing.json --model=llama --emit=graph ${LLAMA_FAMILY})
mlk_driver_test(config_string 1 "error: config '[^']*string.json': 'hidden_size' is a string, dim 'D' needs a number"
                --config ${CFG}/string.json --model=llama --emit=graph ${LLAMA_FAMILY})
mlk_driver_test(config_fraction 1 "error: config '[^']*fraction.json': 'head_dim' is 12.5, but dim 'HD' is an integer\n[^\n]*\n[^\n]*\n$"
                --config ${CFG}/fraction.json --model=llama --emit=graph ${LLAMA_FAMILY})
mlk_driver_test(config_zero 1 "error: config '[^']*zero.json': 'num_hidden_layers' is 0, but dim 'L' must be positive\n[^\n]*\n[^\n]*\n$"
                --config ${CFG}/zero.json --model=llama --emit=graph ${LLAMA_FAMILY})
mlk_driver_test(config_inexact 1 "error: 70 / 6 leaves a remainder of 4: integer division must be exact.*note: config '[^']*inexact.json' has no 'head_dim': dim 'HD' keeps its own expression"
                --config ${CFG}/inexact.json --model=llama --emit=graph ${LLAMA_FAMILY})
mlk_driver_test(config_invalid 1 "mlkc: error: config '[^']*invalid.json' is not valid JSON: .*line 2"
                --config ${CFG}/invalid.json ${LLAMA_FAMILY})
mlk_driver_test(config_array 1 "mlkc: error: config '[^']*array.json' is not a JSON object"
                --config ${CFG}/array.json ${LLAMA_FAMILY})
mlk_driver_test(config_no_file 1 "mlkc: error: cannot read config 'no-such.json'"
                --config no-such.json ${LLAMA_FAMILY})
mlk_driver_test(config_unbound 1 "mlkc: error: --config [^:]*tiny.json: no dim of the program binds a config.json key"
                --config ${CFG}/tiny.json ${MLP})
mlk_driver_test(config_needs_file 1 "mlkc: error: --config needs a config.json file" ${MLP} --config)
# --mesh=AXIS=N: the Llama family over 2 ranks: each layer's two allreduces cut the megakernel into
# segments ("decode", "decode.1", ...) with a collective after each of the first four, and the
# generated API runs it on a world.
set(_tiny_cfg ${PROJECT_SOURCE_DIR}/tests/hf/fixtures/llama-tiny/config.json)
set(_llama_family ${PROJECT_SOURCE_DIR}/stdlib/models/llama.mlk)
mlk_driver_test(mesh_segments 0
                "\"name\": \"decode.4\"[^\n]*\"segment\": 4, \"nsegments\": 5,.*\"ranks\": 2,\n  \"collectives\": \\[\n    [{]\"name\": \"allreduce@nn.mlk:36\\[l=0\\]\", \"kind\": \"allreduce\"[^\n]*\"ranks\": 2, \"after\": 0[}]"
                --config=${_tiny_cfg} --mesh=tp=2 --model=llama --emit=graph ${_llama_family})
mlk_driver_test(mesh_header 0 "mlk_status llama_decode_world\\(mlk_world \\*w\\)."
                --config=${_tiny_cfg} --mesh=tp=2 --model=llama --emit=header ${_llama_family})
mlk_driver_test(mesh_one_rank 0 "\"name\": \"decode\", [^\n]*\"nops\": 23, \"variants\""
                --config=${_tiny_cfg} --mesh=tp=1 --model=llama --emit=graph ${_llama_family})
mlk_driver_test(mesh_not_divisible 1 "dimension 1 of 'w_gate' \\(160\\) is not divisible by the 3 ranks of mesh axis 'tp'"
                --config=${_tiny_cfg} --mesh=tp=3 --model=llama --check ${_llama_family})
mlk_driver_test(mesh_no_axis 1 "mlkc: error: --mesh dp=2: the program has no mesh axis 'dp'"
                --mesh=dp=2 ${MLP})
mlk_driver_test(mesh_junk 1 "mlkc: error: --mesh needs AXIS=N, N ranks in 1\\.\\.1024, got 'tp'"
                --mesh=tp ${MLP})
# --collectives=kernel: one launch; each allreduce is an op whose operand's event reaches every
# rank (ranks 2), and the sm_90a PTX has the system-scope notifies
mlk_driver_test(collectives_kernel 0
                "\"kind\": \"allreduce\"[^\n]*\"ranks\": 2.*-> allreduce@nn.mlk:36\\[l=0\\]\"[^\n]*\"map\": \"tile\"[^\n]*\"ranks\": 2}"
                --config=${_tiny_cfg} --mesh=tp=2 --collectives=kernel --model=llama --emit=graph
                ${_llama_family})
mlk_driver_test(collectives_kernel_ptx 0 "fence\\.acq_rel\\.sys.\n.*red\\.relaxed\\.sys\\.add\\.u32"
                --config=${_tiny_cfg} --mesh=tp=2 --collectives=kernel --model=llama --emit=ptx
                ${_llama_family})
mlk_driver_test(collectives_junk 1 "mlkc: error: --collectives needs kernel or cut, got 'ring'"
                --collectives=ring ${MLP})
