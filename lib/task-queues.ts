// The worker pools (DESIGN.md "Processes"): light orchestration, ONNX inference, PyTorch training.
export const TASK_QUEUES = {
  orchestration: 'sae-orchestration',
  inference: 'sae-gpu-inference',
  training: 'sae-gpu-training',
} as const;

export type TaskQueueName = (typeof TASK_QUEUES)[keyof typeof TASK_QUEUES];
