"""Distillation of a teacher into a compact student built from selected layers (chapter 05).

Loss = alpha·CE(next item) + beta·T²·KL(teacher ‖ student over the catalogue) + gamma·Σ_i w_i·d(h_s_i, h_t_map(i)),
every term, distance, mapping and weighting switchable (`DistillConfig`); full fine-tuning, LoRA or QLoRA adapters,
merged before evaluation; cached teacher outputs; training cost (time, trainable parameters, memory, TPME); chapter
05's grid of students (`run_grid`), the choices and tables it reports, and the method's own student
(`method_student`). What chapter 05 concludes and records lives in its glue, `lab.chapters.c05_distillation`.
"""
from .adapters import TrainableView, apply_adapter, dequantize_merge, load_4bit, lora_config, merge_student
from .config import (ADAPTERS, DISTANCES, MAPPINGS, METHOD_RULE, METHOD_VARIANT, POSITIONS, WEIGHTINGS, DistillConfig,
                     DistillGrid)
from .losses import (DistillLoss, LayerTap, TeacherCache, base_model, build_teacher_cache, hidden_distance, kd_loss,
                     layer_mapping, layer_weights, position_mask)
from .trainer import (METRICS, StudentRuns, best_student, choose_variant, comparison_records, describe_adapter,
                      describe_comparison, distill, estimate_training_memory, freeze_teacher, layerwise_choices,
                      mapped_teacher_layers, method_student, plan_layers, results_table, retention, run_grid,
                      scratch_retention, teacher_key, throughput_ratios, time_teacher_cache, tpme, valid_means,
                      rule_comparisons, variant_comparisons, weights_fingerprint)

__all__ = [
    "DistillConfig", "DistillGrid", "ADAPTERS", "DISTANCES", "MAPPINGS", "POSITIONS", "WEIGHTINGS",
    "DistillLoss", "LayerTap", "TeacherCache", "base_model", "build_teacher_cache", "hidden_distance",
    "kd_loss", "layer_mapping", "layer_weights", "position_mask",
    "TrainableView", "apply_adapter", "dequantize_merge", "load_4bit", "lora_config", "merge_student",
    "METRICS", "distill", "estimate_training_memory", "freeze_teacher", "plan_layers",
    "retention", "time_teacher_cache", "tpme",
    "StudentRuns", "run_grid", "choose_variant", "best_student", "valid_means", "layerwise_choices",
    "variant_comparisons", "rule_comparisons", "describe_adapter", "describe_comparison", "comparison_records", "results_table",
    "throughput_ratios", "mapped_teacher_layers", "scratch_retention", "teacher_key", "weights_fingerprint",
    "method_student", "METHOD_RULE", "METHOD_VARIANT",
]
