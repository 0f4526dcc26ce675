"""The one training engine shared by finetune, distill and qad: seeded, resumable, distributed-ready."""
