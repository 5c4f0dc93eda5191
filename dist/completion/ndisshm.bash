# bash completion for ndisshm (installed as share/bash-completion/completions/ndisshm)
_ndisshm() {
    local cur prev words cword
    _init_completion || return
    local subcommands="demo guest host stat soak"
    local sub="" i
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            demo|guest|host|stat|soak) sub=${words[i]}; break ;;
        esac
    done
    case $prev in
        --config|--socket) _filedir; return ;;
    esac
    if [[ -z $sub ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--help --version --config" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$subcommands" -- "$cur"))
        fi
        return
    fi
    if [[ $cur == -* ]]; then
        # The flags of the subcommand, as its own --help lists them.
        local flags
        flags=$("${words[0]}" "$sub" --help 2>/dev/null | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u)
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    fi
}
complete -F _ndisshm ndisshm
