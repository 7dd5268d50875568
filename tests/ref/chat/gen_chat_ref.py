#!/usr/bin/env python3
"""gen_chat_ref.py — reference chat renderings for src/text/chat.c (owner: tokenizer).

Renders three sample conversations (with and without add_generation_prompt) through each
family's real template string with jinja2, configured as transformers' apply_chat_template
does (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, raise_exception), and writes
tests/ref/chat/chat_ref.json. Template errors (e.g. Mistral v0.1 refusing a system message)
are recorded as {"error": message}. The ChatML template is SmolLM2's own, read from
models/SmolLM2-135M-Instruct.Q4_1.gguf when present (and checked equal to the copy below).

Sources of the template strings: the tokenizer_config.json "chat_template" of
HuggingFaceTB/SmolLM2-135M-Instruct (ChatML), meta-llama/Llama-2-7b-chat-hf,
meta-llama/Meta-Llama-3-8B-Instruct, mistralai/Mistral-7B-Instruct-v0.1 and
HuggingFaceH4/zephyr-7b-beta.

Regenerate:  pip install jinja2 gguf; python3 tests/ref/chat/gen_chat_ref.py
"""
import json
import os

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..', '..'))

SMOLLM2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
           "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
           "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
           "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
          "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
          "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
          "{% else %}{% set content = message['content'] %}{% endif %}"
          "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
          "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")

LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}"
          "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
          "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
           "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
           "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
           "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
           "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")

ZEPHYR = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
          "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
          "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
          "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")

FAMILIES = {
    "chatml": (SMOLLM2, "<|im_start|>", "<|im_end|>"),
    "llama2": (LLAMA2, "<s>", "</s>"),
    "llama3": (LLAMA3, "<|begin_of_text|>", "<|eot_id|>"),
    "mistral": (MISTRAL, "<s>", "</s>"),
    "zephyr": (ZEPHYR, "<s>", "</s>"),
}

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "The capital of France is Paris."}],
    [{"role": "system", "content": "You are a terse SQL assistant."},
     {"role": "user", "content": "  table: t (a, b)\nQ: count rows  "},
     {"role": "assistant", "content": "\nSELECT COUNT(*) FROM t\n"},
     {"role": "user", "content": "And distinct a?"}],
    [{"role": "user", "content": "Écris un haïku 🌸"},
     {"role": "assistant", "content": "Cerisiers en fleur\nle vent emporte\tles mots —"},
     {"role": "user", "content": "Merci!"},
     {"role": "assistant", "content": "  De rien.  "}],
]


def raise_exception(msg):
    raise TemplateError(msg)


def main():
    try:
        import gguf
        path = os.path.join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf')
        if os.path.exists(path):
            f = gguf.GGUFReader(path).fields['tokenizer.chat_template']
            assert bytes(f.parts[-1]).decode() == SMOLLM2, "SmolLM2's template differs from the copy here"
    except ImportError:
        pass
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals['raise_exception'] = raise_exception
    out = {"generated_by": "tests/ref/chat/gen_chat_ref.py", "conversations": CONVERSATIONS, "families": {}}
    for fam, (tmpl, bos, eos) in FAMILIES.items():
        t = env.from_string(tmpl)
        cases = []
        for ci, conv in enumerate(CONVERSATIONS):
            for gen in (False, True):
                case = {"conv": ci, "add_generation_prompt": gen}
                try:
                    case["text"] = t.render(messages=conv, bos_token=bos, eos_token=eos, add_generation_prompt=gen)
                except TemplateError as e:
                    case["error"] = str(e)
                cases.append(case)
        out["families"][fam] = {"template": tmpl, "bos": bos, "eos": eos, "cases": cases}
    with open(os.path.join(HERE, 'chat_ref.json'), 'w', encoding='utf-8') as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote", os.path.join(HERE, 'chat_ref.json'))


if __name__ == '__main__':
    main()
