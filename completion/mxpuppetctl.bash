# mxpuppetctl.bash: bash completion for mxpuppetctl (commands, their options, files for
# check-config, --config and --socket). Installed as
# /usr/share/bash-completion/completions/mxpuppetctl; the commands and options are those of
# `mxpuppetctl --help` (tests/unit/client_ctl_test.cpp checks the two agree).

_mxpuppetctl() {
    local cur prev words cword
    _init_completion 2>/dev/null || {
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    }
    local commands="token invalidate revoke sessions status bridges gateway-token check-config doctor help"
    local global="--socket --json --help --version"

    case $prev in
        -s|--socket|--config)
            COMPREPLY=($(compgen -f -- "$cur"))
            return ;;
        --min-valid-ms|--idle-for|--homeserver)
            return ;;
    esac

    local command="" i
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            -s|--socket|--config|--min-valid-ms|--idle-for|--homeserver) ((i++)) ;;
            -*) ;;
            *) command=${words[i]}; break ;;
        esac
    done

    local options=""
    case $command in
        "") if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$global" -- "$cur"))
            else
                COMPREPLY=($(compgen -W "$commands" -- "$cur"))
            fi
            return ;;
        token) options="--min-valid-ms" ;;
        revoke) options="--all-idle --idle-for --homeserver" ;;
        sessions) options="--homeserver" ;;
        doctor) options="--config" ;;
        check-config)
            if [[ $cur != -* ]]; then
                COMPREPLY=($(compgen -f -- "$cur"))
                return
            fi ;;
        help)
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
            return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$options $global" -- "$cur"))
    fi
}
complete -F _mxpuppetctl mxpuppetctl
