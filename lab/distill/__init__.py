"""Distillation of a teacher into a compact student built from selected layers (chapter 05).

Loss = alpha·CE(next item) + beta·T²·KL(teacher ‖ student over the catalogue) + gamma·Σ_i w_i·d(h_s_i, h_t_map(i)),
every term, distance, mapping and weighting switchable (`DistillConfig`); full fine-tuning, LoRA or QLoRA adapters,
merged before evaluation; cached teacher outputs; training cost (time, trainable parameters, memory, TPME).
"""
from .adapters import TrainableView, apply_adapter, dequantize_merge, load_4bit, lora_config, merge_student
from .config import ADAPTERS, DISTANCES, MAPPINGS, POSITIONS, WEIGHTINGS, DistillConfig, DistillGrid
from .losses import (DistillLoss, LayerTap, TeacherCache, base_model, build_teacher_cache, hidden_distance,
                     importance_vector, kd_loss, layer_mapping, layer_weights, position_mask)
from .trainer import (METRICS, distill, estimate_training_memory, freeze_teacher, per_user_metrics, plan_layers,
                      retention, time_teacher_cache, tpme)

__all__ = [
    "DistillConfig", "DistillGrid", "ADAPTERS", "DISTANCES", "MAPPINGS", "POSITIONS", "WEIGHTINGS",
    "DistillLoss", "LayerTap", "TeacherCache", "base_model", "build_teacher_cache", "hidden_distance",
    "importance_vector", "kd_loss", "layer_mapping", "layer_weights", "position_mask",
    "TrainableView", "apply_adapter", "dequantize_merge", "load_4bit", "lora_config", "merge_student",
    "METRICS", "distill", "estimate_training_memory", "freeze_teacher", "per_user_metrics", "plan_layers",
    "retention", "time_teacher_cache", "tpme",
]
