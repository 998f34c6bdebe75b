# Code generation tests: FileCheck over the LLVM IR and PTX of the examples, and ptxas on the PTX.
set(CG ${CMAKE_CURRENT_SOURCE_DIR}/codegen)
set(MLP ${PROJECT_SOURCE_DIR}/examples/mlp/mlp.mlk)

# mlk_filecheck(NAME CHECKFILE ARGS...): mlkc ARGS | FileCheck CHECKFILE
function(mlk_filecheck name check)
  add_test(NAME ${name}
    COMMAND sh -c "\"$@\" > \"${CMAKE_CURRENT_BINARY_DIR}/${name}.out\" && \"${MLK_FILECHECK}\" \"${check}\" --input-file \"${CMAKE_CURRENT_BINARY_DIR}/${name}.out\""
            -- $<TARGET_FILE:mlkc> ${ARGN})
endfunction()

if(MLK_FILECHECK)
  mlk_filecheck(codegen_mlp_llvm ${CG}/mlp_llvm.check --emit=llvm -O0 ${MLP})
  mlk_filecheck(codegen_mlp_llvm_dynamic ${CG}/mlp_llvm_dynamic.check --emit=llvm -O0
                --schedule=dynamic ${MLP})
  mlk_filecheck(codegen_mlp_llvm_o3 ${CG}/mlp_llvm_o3.check --emit=llvm ${MLP})
  mlk_filecheck(codegen_llama_split_forms_llvm ${CG}/llama_split_forms_llvm.check --emit=llvm
                ${PROJECT_SOURCE_DIR}/examples/llama/llama.mlk)
  mlk_filecheck(codegen_mlp_ptx_sm90a ${CG}/mlp_ptx.check --emit=ptx --arch=sm_90a ${MLP})
  mlk_filecheck(codegen_mlp_ptx_sm80 ${CG}/mlp_ptx.check --emit=ptx --arch=sm_80 ${MLP})
  mlk_filecheck(codegen_mlp_ptx_fence_sm90a ${CG}/mlp_ptx_fence_sm90a.check --emit=ptx --arch=sm_90a ${MLP})
  mlk_filecheck(codegen_mlp_ptx_fence_sm80 ${CG}/mlp_ptx_fence_sm80.check --emit=ptx --arch=sm_80 ${MLP})
  mlk_filecheck(codegen_mlp_ptx_l2_policy_sm90a ${CG}/mlp_ptx_l2_policy_sm90a.check --emit=ptx --arch=sm_90a ${MLP})
  mlk_filecheck(codegen_mlp_ptx_l2_policy_sm80 ${CG}/mlp_ptx_l2_policy_sm80.check --emit=ptx --arch=sm_80 ${MLP})
  mlk_filecheck(codegen_mlp_ptx_inlined ${CG}/mlp_ptx_inlined.check --emit=ptx ${MLP})
  mlk_filecheck(codegen_llama_events ${CG}/llama_tiny_events.check --emit=events
                ${PROJECT_SOURCE_DIR}/tests/sim/llama_tiny.mlk)
  mlk_filecheck(codegen_llama_events_reduce_op ${CG}/llama_tiny_events_reduce_op.check
                --emit=events --attn-reduce-op ${PROJECT_SOURCE_DIR}/tests/sim/llama_tiny.mlk)
  mlk_filecheck(codegen_llama_events_nosplit ${CG}/llama_tiny_events_nosplit.check --emit=events
                --attn-split=1 ${PROJECT_SOURCE_DIR}/tests/sim/llama_tiny.mlk)
  mlk_filecheck(codegen_attention_split ${CG}/attention_split.check --emit=source
                ${CG}/attention_split.mlk)
  mlk_filecheck(codegen_attention_split_llvm ${CG}/attention_split_llvm.check --emit=llvm -O0
                ${CG}/attention_split.mlk)
  mlk_filecheck(codegen_mlp_graph ${CG}/mlp_graph.check --emit=graph ${MLP})
  mlk_filecheck(ir_elaborate ${CG}/ir_elaborate.check --emit=graph --after=elaborate
                ${PROJECT_SOURCE_DIR}/tests/sim/llama_tiny.mlk)
  mlk_filecheck(ir_fuse ${CG}/ir_fuse.check --emit=graph --after=fuse ${CG}/fuse_cases.mlk)
  mlk_filecheck(ir_lowers ${CG}/lowers.check --emit=graph --after=events ${CG}/lowers.mlk)
  mlk_filecheck(ir_multi_outputs ${CG}/multi_outputs.check --emit=graph --after=fuse
                ${CG}/multi_outputs.mlk)
  # biases: folded into matvecs (and their split slices) or eltwise ops of their own
  mlk_filecheck(ir_fuse_bias ${CG}/bias_fuse.check --emit=graph --after=fuse
                ${PROJECT_SOURCE_DIR}/tests/sim/bias_ops.mlk)
  # explicit events: their event tensors, the lists in the JSON, and the lists through fusion
  mlk_filecheck(events_explicit ${CG}/events_explicit.check --emit=events ${CG}/events_explicit.mlk)
  mlk_filecheck(events_explicit_graph ${CG}/events_explicit_graph.check --emit=graph
                ${CG}/events_explicit.mlk)
  mlk_filecheck(events_fused ${CG}/events_fused.check --emit=graph --after=events
                ${CG}/events_fused.mlk)
  mlk_filecheck(ir_schedule ${CG}/ir_schedule.check --emit=graph --after=events
                ${PROJECT_SOURCE_DIR}/tests/sim/llama_tiny.mlk)
  mlk_filecheck(codegen_mlp_events ${CG}/mlp_events.check --emit=events ${MLP})
  mlk_filecheck(codegen_mlp_header ${CG}/mlp_header.check --emit=header ${MLP})
  # checkpoint bindings (bind.c): a cat without layers, and a Llama's per-layer names
  mlk_filecheck(codegen_bind_cat ${CG}/bind_cat.check --emit=source ${CG}/bind_cat.mlk)
  mlk_filecheck(codegen_bind_bias ${CG}/bind_bias.check --emit=source ${CG}/bind_bias.mlk)
  # the Qwen2 family (stdlib/models/qwen2.mlk) bound to a tiny config.json: q, k and v with their
  # biases, and the biases' checkpoint names
  mlk_filecheck(codegen_qwen2_lowering ${CG}/qwen2_lowering.check --emit=graph --after=fuse
                --config ${CG}/qwen2_config.json --model=qwen2
                ${PROJECT_SOURCE_DIR}/stdlib/models/qwen2.mlk)
  mlk_filecheck(codegen_qwen2_bindings ${CG}/qwen2_bindings.check --emit=source
                --config ${CG}/qwen2_config.json --model=qwen2
                ${PROJECT_SOURCE_DIR}/stdlib/models/qwen2.mlk)
  mlk_filecheck(codegen_llama_ckpt_bindings ${CG}/llama_ckpt_bindings.check --emit=source
                ${PROJECT_SOURCE_DIR}/tests/ckpt/llama_ckpt.mlk)
endif()

# ptxas must accept what mlkc emits, for both targets: the mlp, and attention split and not.
foreach(arch sm_90a sm_80)
  foreach(model mlp attention_split)
    set(src ${MLP})
    if(model STREQUAL "attention_split")
      set(src ${CG}/attention_split.mlk)
    endif()
    if(MLK_PTXAS)
      add_test(NAME ptxas_${model}_${arch}
        COMMAND sh -c "\"$1\" --emit=ptx --arch=${arch} \"$2\" -o \"$3/${model}.${arch}.ptx\" && \"$4\" -arch=${arch} \"$3/${model}.${arch}.ptx\" -o \"$3/${model}.${arch}.cubin\""
                -- $<TARGET_FILE:mlkc> ${src} ${CMAKE_CURRENT_BINARY_DIR} ${MLK_PTXAS})
    else()
      add_test(NAME ptxas_${model}_${arch} COMMAND sh -c "echo 'SKIP: ptxas not found (no CUDA toolkit)'; exit 77")
      set_tests_properties(ptxas_${model}_${arch} PROPERTIES SKIP_RETURN_CODE 77)
    endif()
  endforeach()
endforeach()

# A model's depth adds ops, not code: 126 layers compile into one megakernel whose PTX is the
# 16-layer model's, byte for byte. Six compiles to PTX and ptxas take ~40 s, up to ~5 minutes
# under the sanitizers on a loaded 2-core machine: the time limit is a hang detector, above that.
add_test(NAME codegen_deep_model
  COMMAND sh ${CG}/deep_model.sh $<TARGET_FILE:mlkc> ${PROJECT_SOURCE_DIR}/examples/llama/llama.mlk
          ${CMAKE_CURRENT_BINARY_DIR}/deep_model "${MLK_PTXAS}")
set_tests_properties(codegen_deep_model PROPERTIES TIMEOUT 900)
