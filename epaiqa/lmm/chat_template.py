"""The chat template of LLaVA-OneVision's ChatML with images where the question puts them.

Shared by the backbones that load a hub model (:mod:`epaiqa.lmm.backbones`) and the ``mini`` composition
(:mod:`epaiqa.lmm.mini`), which SmolLM2's ChatML also speaks.
"""

#: LLaVA-OneVision's Qwen2 chat format (``<|im_start|>role\n … <|im_end|>\n``, generation prompt
#: ``<|im_start|>assistant\n``), except that each ``{"type": "image"}`` part becomes ``<image>`` where it
#: stands among the text parts, as in the paper's questions ("The original image is: [image], …").
#: The hub's own template puts all images first; :func:`load_backbone` swaps it for this one.
#: Assistant text sits in ``{% generation %}`` blocks, so assistant-token masks also work.
INTERLEAVED_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}{% endgeneration %}"
    "{% else %}{{ message['content'] }}{% endif %}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}"
    "{% elif part['type'] == 'video' %}{{ '<video>' }}"
    "{% elif part['type'] == 'text' %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ part['text'] }}{% endgeneration %}"
    "{% else %}{{ part['text'] }}{% endif %}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
