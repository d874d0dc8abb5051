#!/usr/bin/python3
"""Regenerates the small seed corpora in tests/fuzz/corpus/<target>/seed-*.

Seeds are derived from the repository's own fixtures (tokenizer fixtures cut down to a few hundred
tokens, the router's chat template, a micro random-weight model from tools/gen_model.py and its
`lfmd quantize` outputs). Regression inputs (crash-*, leak-*, regress-*) are never touched.
Usage: tests/fuzz/make_seeds.py [--lfmd BUILD/src/lfmd]
"""
import argparse, json, os, shutil, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
SEP = b"\n#LFMD#\n"
MICRO = {"vocab_size": 32, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
         "num_key_value_heads": 1, "block_ff_dim": 32, "block_auto_adjust_ff_dim": False,
         "layer_types": ["conv", "full_attention"]}


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def shrink_tokenizer(path, keep=300):
    d = json.load(open(path))
    m = d["model"]
    vocab = {k: v for k, v in m["vocab"].items() if v < keep}
    merges = []
    for mg in m.get("merges", []):
        a, b = mg if isinstance(mg, list) else mg.split(" ", 1)
        if a in vocab and b in vocab and (a + b) in vocab:
            merges.append(mg)
    m["vocab"] = vocab
    m["merges"] = merges[:200]
    d["added_tokens"] = [dict(t, id=keep + i) for i, t in enumerate(d["added_tokens"][:4])]
    return json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lfmd", default=os.path.join(ROOT, "build", "src", "lfmd"))
    args = ap.parse_args()
    for t in os.listdir(CORPUS) if os.path.isdir(CORPUS) else []:
        for f in os.listdir(os.path.join(CORPUS, t)):
            if f.startswith("seed-"):
                os.unlink(os.path.join(CORPUS, t, f))
    tmp = tempfile.mkdtemp()
    try:
        micro = os.path.join(tmp, "micro")
        subprocess.check_call([sys.executable, os.path.join(ROOT, "tools", "gen_model.py"),
                               "--preset", "tiny-lfm2", "--config", json.dumps(MICRO), "--seed", "2",
                               "--out", micro], stdout=subprocess.DEVNULL)
        cfg = open(os.path.join(micro, "config.json"), "rb").read()
        st = open(os.path.join(micro, "model.safetensors"), "rb").read()
        put("fuzz_safetensors", "micro-lfm2", cfg + SEP + st)
        put("fuzz_safetensors", "micro-lfm2-default-config", st)
        llama = os.path.join(tmp, "llama")
        subprocess.check_call([sys.executable, os.path.join(ROOT, "tools", "gen_model.py"),
                               "--preset", "tiny-llama", "--config", json.dumps(
                                   {"vocab_size": 32, "hidden_size": 16, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "num_key_value_heads": 1,
                                    "intermediate_size": 32}),
                               "--seed", "3", "--out", llama], stdout=subprocess.DEVNULL)
        put("fuzz_safetensors", "micro-llama",
            open(os.path.join(llama, "config.json"), "rb").read() + SEP +
            open(os.path.join(llama, "model.safetensors"), "rb").read())
        # MLX and GGUF outputs of lfmd quantize (group size 32 fits the micro shapes? if not, skip)
        if os.path.exists(args.lfmd):
            mlx = os.path.join(tmp, "mlx")
            if subprocess.call([args.lfmd, "quantize", micro, mlx, "--group-size", "32"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0:
                put("fuzz_safetensors", "micro-mlx-q4",
                    open(os.path.join(mlx, "config.json"), "rb").read() + SEP +
                    open(os.path.join(mlx, "model.safetensors"), "rb").read())
            gm = os.path.join(tmp, "micro-gguf")  # GGUF needs vocab >= 272 and rows of 32
            subprocess.check_call([sys.executable, os.path.join(ROOT, "tools", "gen_model.py"),
                                   "--preset", "tiny-lfm2", "--config",
                                   json.dumps(dict(MICRO, vocab_size=288, hidden_size=32)),
                                   "--seed", "4", "--out", gm], stdout=subprocess.DEVNULL)
            for ty in ("q8_0", "q4_0"):
                g = os.path.join(tmp, "m-%s.gguf" % ty)
                if subprocess.call([args.lfmd, "quantize", gm, g, "--format", "gguf", "--type", ty],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0:
                    put("fuzz_gguf", "micro-" + ty, open(g, "rb").read())
        # A GGUF with a tokenizer: the router quantized (large; only its metadata prefix is kept).
        # tokenizer.json: cut-down fixtures of each style
        for n in ("gpt2", "llama2", "llama3", "qwen3"):
            p = os.path.join(ROOT, "tests", "data", "tokenizers", n, "tokenizer.json")
            put("fuzz_tokenizer_json", n, shrink_tokenizer(p))
        router = os.path.join(ROOT, "models", "lfm2-router")
        put("fuzz_tokenizer_json", "router-with-config",
            shrink_tokenizer(os.path.join(router, "tokenizer.json")) + SEP +
            open(os.path.join(router, "tokenizer_config.json"), "rb").read())
        # chat templates
        for n, p in (("router", os.path.join(router, "tokenizer_config.json")),
                     ("qwen3", os.path.join(ROOT, "tests/data/tokenizers/qwen3/tokenizer_config.json")),
                     ("llama3", os.path.join(ROOT, "tests/data/tokenizers/llama3/tokenizer_config.json"))):
            try:
                tmpl = json.load(open(p)).get("chat_template")
            except FileNotFoundError:
                continue
            if isinstance(tmpl, str):
                put("fuzz_chat_template", n, tmpl)
        put("fuzz_chat_template", "loops",
            "{% for m in messages %}{{ loop.index }}:{{ m.role|upper }}={{ m.content|trim }}"
            "{% if not loop.last %}\n{% endif %}{% endfor %}{% set ns = namespace(x=0) %}"
            "{% for i in range(3) %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}"
            "{{ tools|tojson }}{{ custom[1:] }}{% if add_generation_prompt %}<|a|>{% endif %}")
        put("fuzz_chat_template", "macro-messages",
            "{% macro f(x, y=2) %}{{ x ~ y }}{% endmacro %}{{ f(1) }}{{ messages[0]['content'] }}"
            "{{ 'a' in 'abc' }}{{ [1,2,3]|join(',') }}{{ {'k': 1}.items()|list }}"
            + SEP.decode() + '[{"role":"user","content":"q"}]')
        # encoder inputs
        put("fuzz_encode", "ascii", "\x00Hello world, this is a test of 1234567 tokens!\n\n  x")
        put("fuzz_encode", "special", "\x01<|im_start|>user\nhi<|im_end|>\n<s></s>")
        put("fuzz_encode", "unicode", "\x02caf\u00e9 \u4f60\u597d \U0001f600 \u2581\u2581x".encode())
        put("fuzz_encode", "invalid-utf8", b"\x03\xff\xfe\xc3\x28\xe2\x82 \xf0\x9f\x98 end")
        put("fuzz_encode", "spaces", "\x00" + " " * 40 + "\t\t\r\n" * 5 + "a" * 50)
        # OpenAI bodies (first byte odd = chat; '{' is odd, so completion bodies start with a space)
        put("fuzz_openai", "chat", '{"messages":[{"role":"system","content":"s"},{"role":"user",'
            '"content":[{"type":"text","text":"hi"},{"type":"text","text":"x"}]}],"max_tokens":8,'
            '"temperature":0.5,"top_p":0.9,"seed":1,"stop":["a","b"],"stream":true,'
            '"stream_options":{"include_usage":true},"model":"m","n":1}')
        put("fuzz_openai", "completion", ' {"prompt":"hello","max_tokens":4,"stop":"x","temperature":0}')
        put("fuzz_openai", "completion-array", ' {"prompt":["one"],"max_completion_tokens":2,"seed":-1}')
        put("fuzz_openai", "bad-types", '{"messages":"x","max_tokens":"8","temperature":9,"n":2}')
        # Ollama bodies (first byte odd = /api/chat, even = /api/generate: '{' is odd, so the
        # generate bodies start with a space)
        put("fuzz_ollama", "chat", '{"model":"lfm2","messages":[{"role":"system","content":"s"},'
            '{"role":"user","content":"hi","images":[]}],"stream":false,"keep_alive":"1h30m",'
            '"options":{"temperature":0.5,"top_p":0.9,"top_k":40,"seed":7,"num_predict":8,'
            '"repeat_penalty":1.1,"repeat_last_n":-1,"num_ctx":2048,"stop":["a","b"]}}')
        put("fuzz_ollama", "generate", ' {"model":"m","prompt":"hello","system":"be brief","raw":false,'
            '"stream":true,"keep_alive":300,"options":{"stop":"x","min_p":0.1},"suffix":""}')
        put("fuzz_ollama", "generate-format", ' {"prompt":"p","format":{"type":"object","properties":'
            '{"name":{"type":"string","maxLength":8},"n":{"type":"integer"}},"required":["name"]}}')
        put("fuzz_ollama", "chat-format-json", '{"messages":[{"role":"user","content":"x"}],'
            '"format":"json","keep_alive":"-1"}')
        put("fuzz_ollama", "unload", ' {"model":"m","keep_alive":0}')
        put("fuzz_ollama", "bad", '{"prompt":1,"options":{"top_p":2},"keep_alive":"5x","tools":[1]}')
        # JSON-schema constraints: schema [SEP walk bytes]; walk ops 0 byte, 1 token, 2 mask, 3 check
        walk = bytes([2, 0, 2, 1, 2, 2, 3, 0, 2, 3, 2, 5, 2, 7, 2, 0, 2, 0, 2, 0, 2, 0, 2, 0] * 4)
        put("fuzz_schema", "object", b'{"type":"object","properties":{"name":{"type":"string",'
            b'"minLength":1,"maxLength":12},"id":{"type":"integer"},"tags":{"type":"array","items":'
            b'{"type":"string"},"maxItems":3},"ok":{"type":"boolean"}},"required":["name","id"]}'
            + SEP + walk)
        put("fuzz_schema", "enum-const", b'{"type":"object","properties":{"color":{"enum":["red",'
            b'"green",1,null]},"k":{"const":{"a":[1,2]}},"v":{"type":["number","null"]}},'
            b'"additionalProperties":{"type":"string"}}' + SEP + walk)
        put("fuzz_schema", "json-object", b"null" + SEP + bytes([0, ord("{"), 0, ord('"'), 0, ord("a"),
            0, ord('"'), 0, ord(":"), 0, ord("["), 0, ord("1"), 0, ord("]"), 0, ord("}"), 3, 0]))
        put("fuzz_schema", "choices", b'["billing","bill","support","\u00e9t\u00e9"]' + SEP + walk)
        put("fuzz_schema", "array-nested", b'{"type":"array","items":{"type":"array","items":'
            b'{"type":"number"},"minItems":1},"minItems":2,"maxItems":4}' + SEP + walk)
        put("fuzz_schema", "bytes-feed", b'{"type":"string","maxLength":4}' + SEP +
            bytes([0, ord('"'), 0, 0xc3, 0, 0xa9, 0, ord("\\"), 0, ord("u"), 0, ord("0"), 0, ord("0"),
                   0, ord("4"), 0, ord("1"), 0, ord('"'), 3, 0, 1, 7, 2, 0]))
        # stdio lines
        put("fuzz_stdio", "tasks",
            '{"requestId":"1","type":"completion","prompt":"hi","maxTokens":4,"temperature":0}\n'
            '{"requestId":2,"type":"classification","prompt":"x","categories":["a","b"],"maxTokens":3}\n'
            '{"requestId":"3","type":"coordination","prompt":"p","agents":["x","y"],"maxTokens":2}\n'
            '{"requestId":"4","type":"ping"}\n{"requestId":"5","type":"stats"}\n'
            '{"requestId":"6","type":"cancel","targetId":"1"}\nnot json\n{"type":"nope"}\n'
            '{"requestId":"7","type":"routing","prompt":"r","deadlineMs":1,"maxTokens":0}\n')
        put("fuzz_stdio", "empty-lines", "\n\n{}\n[]\nnull\n\"s\"\n")
        # JSON
        put("fuzz_json", "mixed", '{"a":[1,-2.5e10,true,false,null,"\\u00e9\\ud83d\\ude00\\n"],'
            '"b":{"c":{}},"a":0}')
        put("fuzz_json", "deep", "[" * 70 + "]" * 70)
        put("fuzz_json", "numbers", "[0,-0,1e308,1e-320,123456789012345678901234567890,0.1]")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
